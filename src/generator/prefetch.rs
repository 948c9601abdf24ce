//! [`prefetch`](crate::ConcurrentStreamExt::prefetch): any stream, driven
//! ahead of its consumer by a task of its own.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::buffer::{Buffer, Link};
use crate::context::TaskContext;
use crate::internal::runtime_handle;

/// A stream driven ahead of its consumer by a task of its own: what
/// [`prefetch`](crate::ConcurrentStreamExt::prefetch) returns.
///
/// At most `buffer` items are pulled from the source before the consumer
/// takes them. Dropping it stops the task (and drops the source) at once, and
/// so does cancelling the context it is bound to: the one current where it
/// was built, or one set with [`context`](Self::context) (the crate's
/// [context rule](crate#contexts-one-rule)).
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
    let link = Link::new(crate::internal::ambient_context(None));
    let task_link = std::sync::Arc::clone(&link);
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
            _ = task_link.cancelled() => {}
        }
    });
    Prefetch {
        buffer: Buffer::new(rx, task, link),
    }
}

impl<T> Prefetch<T> {
    /// Binds the stream to `ctx`: once `ctx` is cancelled (or its deadline
    /// passes) the task stops pulling, drops the source and ends, and the
    /// stream ends at its next poll, dropping what is still buffered. Ask
    /// `ctx.err()` why it ended.
    ///
    /// It replaces the context inherited where the stream was built (the
    /// crate's [context rule](crate#contexts-one-rule)) or set before. The
    /// task already runs: attach it right after
    /// [`prefetch`](crate::ConcurrentStreamExt::prefetch).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let mut s = futures::stream::iter(0..).prefetch(4).context(&ctx);
    /// assert_eq!(s.next().await, Some(0));
    /// ctx.cancel();
    /// assert_eq!(s.next().await, None);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.buffer.bind(ctx);
        self
    }

    /// The context the stream is bound to: the one set with
    /// [`context`](Self::context), else the one current where it was built.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let s = ctx.scope(async { futures::stream::iter([1]).prefetch(1) }).await;
    /// assert!(s.task_context().is_some(), "inherited from the scope");
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.buffer.task_context()
    }

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

    /// The buffered items (none promised while a context could stop the
    /// stream); no upper bound until it ends.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.buffer.size_hint()
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
