//! [`prefetch`](crate::ConcurrentStreamExt::prefetch): any stream, driven
//! ahead of its consumer by a task of its own.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::buffer::Buffer;
use crate::internal::runtime_handle;

/// A stream driven ahead of its consumer by a task of its own: what
/// [`prefetch`](crate::ConcurrentStreamExt::prefetch) returns.
///
/// At most `buffer` items are pulled from the source before the consumer
/// takes them. Dropping it stops the task (and drops the source) at once.
#[must_use = "the source runs ahead, but its items are lost unless polled"]
pub struct Prefetch<T> {
    buffer: Buffer<T>,
}

pub(crate) fn prefetch<S>(source: S, buffer: usize) -> Prefetch<S::Item>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    assert!(buffer > 0, "prefetch: `buffer` must be at least 1, got 0");
    let runtime = runtime_handle("prefetch");
    let (tx, rx) = mpsc::channel(buffer);
    let task = runtime.spawn(async move {
        let mut source = std::pin::pin!(source);
        // Room first, then the item: the source never runs more than
        // `buffer` items ahead of the consumer.
        let pump = async {
            while let Ok(permit) = tx.reserve().await {
                match source.next().await {
                    Some(item) => permit.send(item),
                    None => break,
                }
            }
        };
        tokio::select! {
            biased;
            () = pump => {}
            () = tx.closed() => {}
        }
    });
    Prefetch {
        buffer: Buffer::new(rx, task),
    }
}

impl<T> Prefetch<T> {
    /// How many items wait in the buffer.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = futures::stream::iter(0..100).prefetch(10);
    /// tokio::task::yield_now().await; // let the task fill the buffer
    /// assert_eq!(s.buffered_len(), 10);
    /// # }
    /// ```
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }
}

impl<T> Stream for Prefetch<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.buffer.poll_next(cx)
    }
}

impl<T> FusedStream for Prefetch<T> {
    fn is_terminated(&self) -> bool {
        self.buffer.is_done()
    }
}

impl<T> fmt::Debug for Prefetch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetch")
            .field("buffered", &self.buffered_len())
            .field("done", &self.buffer.is_done())
            .finish()
    }
}
