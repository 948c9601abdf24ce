//! The lazy generator: the producer future lives inside the stream and is
//! polled only from the consumer's `poll_next` (Go's unbuffered channel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;

use super::rendezvous::Rendezvous;
use super::{Closed, Sink, Yielder};
use crate::context::{CancelledOwned, ContextError, TaskContext};

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
    /// The bound context (also in `slot`, for the yielder's sends).
    context: Option<TaskContext>,
    /// Ready when `context` stops; spawns nothing, a deadline included.
    cancelled: Option<Pin<Box<CancelledOwned>>>,
    slot: Arc<Rendezvous<T>>,
}

impl<T, Fut> Lazy<T, Fut> {
    pub(super) fn is_done(&self) -> bool {
        self.producer.is_none()
    }

    pub(super) fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// Nothing is known ahead of the producer, except that it has returned.
    pub(super) fn size_hint(&self) -> (usize, Option<usize>) {
        if self.is_done() {
            (0, Some(0))
        } else {
            (0, None)
        }
    }

    /// Binds to `ctx`, replacing the context bound before (the one inherited
    /// at construction, or an earlier `.context`).
    pub(super) fn attach(&mut self, ctx: &TaskContext) {
        self.slot.set_context(ctx);
        self.cancelled = Some(Box::pin(ctx.cancelled_owned()));
        self.context = Some(ctx.clone());
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
        let mut lazy = Lazy {
            producer: None,
            context: None,
            cancelled: None,
            slot,
        };
        // The crate's one rule: no context given, the current one (if any).
        if let Some(ctx) = crate::internal::ambient_context(None) {
            lazy.attach(&ctx);
        }
        lazy.producer = Some(Box::pin(producer(yielder)));
        lazy
    }

    pub(super) fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step<T, Fut::Output>>> {
        let Some(producer) = &mut self.producer else {
            return Poll::Ready(None);
        };
        if let Some(cancelled) = &mut self.cancelled {
            if cancelled.as_mut().poll(cx).is_ready() {
                let reason = self
                    .context
                    .as_ref()
                    .and_then(TaskContext::err)
                    .unwrap_or(ContextError::Cancelled);
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
/// # The producer
///
/// It returns `Result<(), Closed>`, so that `y.send(v).await?` stops it as
/// soon as nobody listens any more. The natural forms need no annotation: an
/// endless `loop` of sends, or a `for` loop ending in `Ok(())`. An `Err`
/// returned by the producer only means it stopped because nobody listened;
/// the stream ends either way. Producers whose own errors should reach the
/// consumer use [`try_generate`](super::try_generate).
///
/// The generator is bound to the context current where it is built, or to
/// one set with [`Generate::context`] (the crate's
/// [context rule](crate#contexts-one-rule)). To let the producer run ahead on
/// its own task, use [`generate_ahead`](super::generate_ahead).
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Go: for i := 0; ; i++ { ch <- i }
/// let naturals = generate(|y| async move {
///     let mut i = 0_u64;
///     loop {
///         y.send(i).await?; // stops here once the consumer is gone
///         i += 1;
///     }
/// });
/// assert_eq!(naturals.take(4).collect::<Vec<_>>().await, [0, 1, 2, 3]);
///
/// let fibonacci = generate(|y| async move {
///     let (mut a, mut b) = (0_u64, 1);
///     while a < u64::MAX / 2 {
///         y.send(a).await?;
///         (a, b) = (b, a + b);
///     }
///     Ok(())
/// });
/// let first: Vec<u64> = fibonacci.take(7).collect().await;
/// assert_eq!(first, [0, 1, 1, 2, 3, 5, 8]);
/// # }
/// ```
pub fn generate<T, F, Fut>(producer: F) -> Generate<T, Fut>
where
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future<Output = Result<(), Closed>>,
{
    Generate {
        inner: Lazy::new(producer),
    }
}

impl<T, Fut: Future> Generate<T, Fut> {
    /// Binds the generator to `ctx`: once `ctx` is cancelled (or its deadline
    /// passes), [`send`](Yielder::send) fails with a [`Closed`] carrying the
    /// context's error and the stream ends at once, even if the producer is
    /// waiting on something else. Ask `ctx.err()` why it ended.
    ///
    /// It replaces the context inherited where the generator was built (the
    /// crate's [context rule](crate#contexts-one-rule)) or set before.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let mut ticks = generate(|y| async move {
    ///     let mut n = 0_u32;
    ///     loop {
    ///         y.send(n).await?;
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

    /// The context the generator is bound to: the one set with
    /// [`context`](Self::context), else the one current where it was built.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let g = ctx.scope(async { generate(|y| async move { y.send(1).await }) }).await;
    /// assert!(g.task_context().is_some(), "inherited from the scope");
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.inner.task_context()
    }
}

impl<T, Fut> Stream for Generate<T, Fut>
where
    Fut: Future<Output = Result<(), Closed>>,
{
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match ready!(self.inner.poll_step(cx)) {
            Some(Step::Item(item)) => Poll::Ready(Some(item)),
            Some(Step::Returned(_) | Step::Cancelled) | None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T, Fut> FusedStream for Generate<T, Fut>
where
    Fut: Future<Output = Result<(), Closed>>,
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
