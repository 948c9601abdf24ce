//! The lazy generator: the producer future lives inside the stream and is
//! polled only from the consumer's `poll_next` (Go's unbuffered channel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::rendezvous::Rendezvous;
use super::{Closed, ProducerOutput, Sink, Yielder};
use crate::context::{ContextError, TaskContext};

/// What one poll of a lazy generator produced.
pub(super) enum Step<T, O> {
    Item(T),
    /// The producer returned this.
    Returned(O),
    /// The attached context was cancelled.
    Cancelled,
}

/// The producer and its hand-over point; the two public streams add only
/// what they do with the producer's return value.
///
/// The producer is boxed once, so the streams are `Unpin` and work with
/// `StreamExt::next` without pinning by hand.
pub(super) struct Lazy<T, Fut> {
    producer: Option<Pin<Box<Fut>>>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    slot: Arc<Rendezvous<T>>,
}

impl<T, Fut> Lazy<T, Fut> {
    pub(super) fn is_done(&self) -> bool {
        self.producer.is_none()
    }
}

impl<T, Fut> Drop for Lazy<T, Fut> {
    fn drop(&mut self) {
        // A yielder the producer moved elsewhere must learn that nobody listens.
        self.slot.close(Closed::default());
    }
}

impl<T, Fut: Future> Lazy<T, Fut> {
    pub(super) fn new<F: FnOnce(Yielder<T>) -> Fut>(producer: F) -> Self {
        let slot = Arc::new(Rendezvous::new());
        let yielder = Yielder {
            sink: Sink::Lazy(Arc::clone(&slot)),
        };
        Lazy {
            producer: Some(Box::pin(producer(yielder))),
            cancelled: None,
            slot,
        }
    }

    /// Binds to `ctx`, unless a context is bound already: the first one counts.
    pub(super) fn attach(&mut self, ctx: &TaskContext) {
        if self.cancelled.is_none() {
            self.slot.set_context(ctx);
            self.cancelled = Some(Box::pin(ctx.token().cancelled_owned()));
        }
    }

    pub(super) fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step<T, Fut::Output>>> {
        let Some(producer) = &mut self.producer else {
            return Poll::Ready(None);
        };
        if let Some(cancelled) = &mut self.cancelled {
            if cancelled.as_mut().poll(cx).is_ready() {
                let ctx = self.slot.context();
                let reason = ctx.and_then(|c| c.err()).unwrap_or(ContextError::Cancelled);
                self.slot.close(Closed::cancelled(reason));
                // One last poll lets a producer parked in `send` see the
                // error; whatever it awaits next is dropped with it.
                let _ = producer.as_mut().poll(cx);
                self.producer = None;
                self.cancelled = None;
                return Poll::Ready(Some(Step::Cancelled));
            }
        }
        // An item handed over from another task comes first; otherwise the
        // producer runs — only now, because the consumer asked.
        if let Some(item) = self.slot.take(cx.waker()) {
            return Poll::Ready(Some(Step::Item(item)));
        }
        match producer.as_mut().poll(cx) {
            Poll::Ready(output) => {
                self.producer = None;
                self.slot.close(Closed::default());
                Poll::Ready(Some(Step::Returned(output)))
            }
            Poll::Pending => match self.slot.take(cx.waker()) {
                Some(item) => Poll::Ready(Some(Step::Item(item))),
                None => Poll::Pending,
            },
        }
    }
}

/// A lazy generator: the stream [`generate`] returns.
///
/// The producer runs only inside this stream's `poll_next`, and only until it
/// hands over the next item, so it never runs ahead of the consumer. No task
/// is spawned; it works on any executor.
#[must_use = "streams do nothing unless polled"]
pub struct Generate<T, Fut> {
    inner: Lazy<T, Fut>,
}

/// A lazy generator (Go's generator on an unbuffered channel): `producer`
/// gets a [`Yielder`] and sends items; the returned stream yields them.
///
/// The producer runs only while the consumer asks for an item: each
/// [`send`](Yielder::send) waits until the consumer has taken the item, and
/// the code after it runs only when the consumer asks for the next one. The
/// stream ends when the producer returns. Dropping the stream drops the
/// producer wherever it waits.
///
/// The producer returns `()` or `Result<(), Closed>` (see [`ProducerOutput`]).
/// Attach a [`TaskContext`] with [`Generate::context`]. To let the producer
/// run ahead on its own task, use [`generate_ahead`](super::generate_ahead).
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
/// use tokio_conc::generator::{Closed, Yielder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fibonacci = generate(|y: Yielder<u64>| async move {
///     let (mut a, mut b) = (0, 1);
///     while a < u64::MAX / 2 {
///         y.send(a).await?; // stops here once the consumer is gone
///         (a, b) = (b, a + b);
///     }
///     Ok::<(), Closed>(())
/// });
/// let first: Vec<u64> = fibonacci.take(7).collect().await;
/// assert_eq!(first, [0, 1, 1, 2, 3, 5, 8]);
/// # }
/// ```
pub fn generate<T, F, Fut>(producer: F) -> Generate<T, Fut>
where
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future,
    Fut::Output: ProducerOutput,
{
    Generate {
        inner: Lazy::new(producer),
    }
}

impl<T, Fut: Future> Generate<T, Fut> {
    /// Binds the generator to `ctx`: once `ctx` is cancelled (or its deadline
    /// passes), [`send`](Yielder::send) fails with a [`Closed`] carrying the
    /// context's error and the stream ends at once, even if the producer is
    /// waiting on something else. Only the first context attached counts.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Yielder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let mut ticks = generate(|y: Yielder<u32>| async move {
    ///     let mut n = 0;
    ///     while y.send(n).await.is_ok() {
    ///         n += 1;
    ///     }
    /// })
    /// .context(&ctx);
    /// assert_eq!(ticks.next().await, Some(0));
    /// ctx.cancel();
    /// assert_eq!(ticks.next().await, None);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.inner.attach(ctx);
        self
    }
}

impl<T, Fut> Stream for Generate<T, Fut>
where
    Fut: Future,
    Fut::Output: ProducerOutput,
{
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match ready!(self.inner.poll_step(cx)) {
            Some(Step::Item(item)) => Poll::Ready(Some(item)),
            Some(Step::Returned(_) | Step::Cancelled) | None => Poll::Ready(None),
        }
    }
}

impl<T, Fut> FusedStream for Generate<T, Fut>
where
    Fut: Future,
    Fut::Output: ProducerOutput,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_done()
    }
}

impl<T, Fut> fmt::Debug for Generate<T, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generate")
            .field("done", &self.inner.is_done())
            .finish_non_exhaustive()
    }
}
