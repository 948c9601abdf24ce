//! [`generate_ahead`]: a generator whose producer runs ahead of the consumer
//! on its own task, feeding a bounded buffer (Go's buffered channel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::buffer::{Buffer, Link};
use super::{Closed, Sink, Yielder, closed};
use crate::context::TaskContext;
use crate::internal::runtime_handle;

pub(super) struct ChannelSink<T> {
    tx: mpsc::Sender<T>,
    link: Arc<Link>,
}

impl<T> ChannelSink<T> {
    pub(super) async fn send(&self, value: T) -> Result<(), Closed> {
        if let Some(reason) = self.link.err() {
            return closed(Closed::cancelled(reason)).await;
        }
        // Room in the buffer: no need to wait on the context as well.
        let value = match self.tx.try_send(value) {
            Ok(()) => {
                tokio::task::coop::consume_budget().await;
                return Ok(());
            }
            Err(TrySendError::Closed(_)) => return closed(Closed::default()).await,
            Err(TrySendError::Full(value)) => value,
        };
        tokio::select! {
            biased;
            reason = self.link.cancelled() => closed(Closed::cancelled(reason)).await,
            sent = self.tx.send(value) => match sent {
                Ok(()) => Ok(()),
                Err(_) => closed(Closed::default()).await,
            },
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.link.err().is_some()
    }
}

/// A generator running ahead on its own task: the stream [`generate_ahead`]
/// returns.
///
/// Dropping it closes the buffer: a producer waiting in
/// [`send`](Yielder::send) gets [`Err(Closed)`](Closed) and runs up to its
/// next `.await`, where its task ends — it does not outlive the stream.
#[must_use = "the producer runs ahead, but its items are lost unless polled"]
pub struct GenerateAhead<T> {
    buffer: Buffer<T>,
}

/// A generator whose producer runs on its own task, up to `buffer` items
/// ahead of the consumer (Go's generator on a buffered channel).
///
/// The task starts at once. [`send`](Yielder::send) completes as soon as the
/// item is in the buffer and waits while the buffer is full, so at most
/// `buffer` items wait for the consumer, plus — as in Go — the one the
/// producer holds in a waiting `send`. The stream ends when the producer
/// returns and the buffer is drained. A panic in the producer is resumed in
/// the consumer.
///
/// The producer returns `Result<(), Closed>`, as for
/// [`generate`](super::generate#the-producer). The generator is bound to the
/// context current where it is built, or to one set with
/// [`GenerateAhead::context`] (the crate's
/// [context rule](crate#contexts-one-rule)).
///
/// # Panics
///
/// If `buffer` is 0, or when called outside a Tokio runtime.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pages = generate_ahead(4, |y| async move {
///     for n in 1..=3 {
///         y.send(format!("page {n}")).await?; // fetched while the consumer works
///     }
///     Ok(())
/// });
/// assert_eq!(pages.collect::<Vec<_>>().await, ["page 1", "page 2", "page 3"]);
///
/// // An endless producer needs no annotation either.
/// let naturals = generate_ahead(8, |y| async move {
///     let mut n = 0_u64;
///     loop {
///         y.send(n).await?;
///         n += 1;
///     }
/// });
/// assert_eq!(naturals.take(3).collect::<Vec<_>>().await, [0, 1, 2]);
/// # }
/// ```
///
/// ```should_panic
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // panics: generate_ahead: `buffer` must be at least 1, got 0
/// let _ = tokio_conc::generator::generate_ahead(0, |y| async move { y.send(1).await });
/// # }
/// ```
pub fn generate_ahead<T, F, Fut>(buffer: usize, producer: F) -> GenerateAhead<T>
where
    T: Send + 'static,
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future<Output = Result<(), Closed>> + Send + 'static,
{
    assert!(
        buffer > 0,
        "generate_ahead: `buffer` must be at least 1, got 0"
    );
    let runtime = runtime_handle("generate_ahead");
    let (tx, rx) = mpsc::channel(buffer);
    let link = Link::new(crate::internal::ambient_context(None));
    let consumer_gone = tx.clone();
    let producer = producer(Yielder {
        sink: Sink::Channel(ChannelSink {
            tx,
            link: Arc::clone(&link),
        }),
    });
    let task_link = Arc::clone(&link);
    let task = runtime.spawn(async move {
        // The producer is polled first, so one waiting in `send` sees
        // `Closed` and finishes what it can before the other arms drop it.
        tokio::select! {
            biased;
            _ = producer => {}
            () = consumer_gone.closed() => {}
            _ = task_link.cancelled() => {}
        }
    });
    GenerateAhead {
        buffer: Buffer::new(rx, task, link),
    }
}

impl<T> GenerateAhead<T> {
    /// Binds the running generator to `ctx`: once `ctx` is cancelled (or its
    /// deadline passes), [`send`](Yielder::send) fails with a [`Closed`]
    /// carrying the context's error, the producer's task ends, and the stream
    /// ends at once, dropping what is still buffered.
    ///
    /// It replaces the context inherited where the generator was built (the
    /// crate's [context rule](crate#contexts-one-rule)) or set before. The
    /// producer already runs: attach it right after [`generate_ahead`].
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let mut s = generate_ahead(2, |y| async move {
    ///     let mut n = 0_u32;
    ///     let stop = loop {
    ///         if let Err(closed) = y.send(n).await {
    ///             break closed;
    ///         }
    ///         n += 1;
    ///     };
    ///     let _ = tx.send(stop);
    ///     Ok(())
    /// })
    /// .context(&ctx);
    /// assert_eq!(s.next().await, Some(0));
    /// ctx.cancel();
    /// assert_eq!(s.next().await, None);
    /// let stop = rx.await.unwrap();
    /// assert_eq!(stop.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.buffer.bind(ctx);
        self
    }

    /// The context the generator is bound to: the one set with
    /// [`context`](Self::context), else the one current where it was built.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = generate_ahead(1, |y| async move { y.send(1).await });
    /// assert!(s.task_context().is_none());
    /// let ctx = TaskContext::background();
    /// assert!(s.context(&ctx).task_context().is_some());
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
    /// let s = generate_ahead(8, |y| async move {
    ///     for i in 0..3_u8 {
    ///         y.send(i).await?;
    ///     }
    ///     Ok(())
    /// });
    /// tokio::task::yield_now().await; // let the producer run
    /// assert_eq!(s.buffered_len(), 3);
    /// # }
    /// ```
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }
}

impl<T> Stream for GenerateAhead<T> {
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

impl<T> FusedStream for GenerateAhead<T> {
    fn is_terminated(&self) -> bool {
        self.buffer.is_done()
    }
}

impl<T> fmt::Debug for GenerateAhead<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateAhead")
            .field("buffered", &self.buffered_len())
            .field("done", &self.buffer.is_done())
            .finish_non_exhaustive()
    }
}
