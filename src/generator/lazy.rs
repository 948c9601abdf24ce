//! The lazy generators: the producer future lives inside the stream and is
//! polled only from the consumer's `poll_next` (Go's unbuffered channel).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use futures::stream::FusedStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{Closed, ProducerOutput, Sink, Yielder};
use crate::context::{ContextError, TaskContext};

/// A one-item hand-over point between the producer's [`Yielder`] and the
/// stream. Sends are numbered so a send knows when *its* item was taken.
pub(super) struct Rendezvous<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    item: Option<T>,
    /// How many items were handed over, and how many of them the consumer took.
    offered: u64,
    taken: u64,
    closed: Option<Closed>,
    context: Option<TaskContext>,
    /// The consumer's task: woken only when a send happens outside its poll
    /// (a producer that moved its yielder into another task).
    consumer: Option<Waker>,
    /// Sends waiting in other tasks than the consumer's.
    waiting: Vec<Waker>,
}

impl<T> Rendezvous<T> {
    fn new() -> Self {
        Rendezvous {
            state: Mutex::new(State {
                item: None,
                offered: 0,
                taken: 0,
                closed: None,
                context: None,
                consumer: None,
                waiting: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held except user `Drop`s of items;
        // the state stays consistent either way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed.is_some()
            || state
                .context
                .as_ref()
                .is_some_and(TaskContext::is_cancelled)
    }

    fn close(&self, reason: Closed) {
        let mut state = self.lock();
        state.closed.get_or_insert(reason);
        state.item = None;
        state.wake_waiting();
    }

    /// The consumer's side: remember its waker, take a handed-over item.
    fn take(&self, consumer: &Waker) -> Option<T> {
        let mut state = self.lock();
        if !state
            .consumer
            .as_ref()
            .is_some_and(|w| w.will_wake(consumer))
        {
            state.consumer = Some(consumer.clone());
        }
        let item = state.item.take()?;
        state.taken += 1;
        state.wake_waiting();
        Some(item)
    }
}

impl<T> State<T> {
    fn wake_waiting(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    fn closed_reason(&self) -> Option<Closed> {
        if let Some(reason) = &self.closed {
            return Some(reason.clone());
        }
        let ctx = self.context.as_ref()?;
        ctx.err().map(Closed::cancelled)
    }

    /// Parks a send. A send polled from the consumer's own task needs no
    /// waker: the consumer polls the producer again when it wants an item.
    fn park(&mut self, waker: &Waker) {
        let own_task = self.consumer.as_ref().is_some_and(|w| w.will_wake(waker));
        if !own_task && !self.waiting.iter().any(|w| w.will_wake(waker)) {
            self.waiting.push(waker.clone());
        }
    }
}

/// The future behind [`Yielder::send`] on a lazy generator: hand the item
/// over, then wait until the consumer took it.
pub(super) struct Offer<'a, T> {
    slot: &'a Rendezvous<T>,
    value: Option<T>,
    /// The number of this send once its item is handed over; 0 before.
    ticket: u64,
}

// `value` is never pinned: it is moved out by value.
impl<T> Unpin for Offer<'_, T> {}

impl<'a, T> Offer<'a, T> {
    pub(super) fn new(slot: &'a Rendezvous<T>, value: T) -> Self {
        Offer {
            slot,
            value: Some(value),
            ticket: 0,
        }
    }
}

impl<T> Future for Offer<'_, T> {
    type Output = Result<(), Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this.slot.lock();
        if this.ticket != 0 && state.taken >= this.ticket {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = state.closed_reason() {
            this.value = None;
            return Poll::Ready(Err(reason));
        }
        if this.ticket == 0 {
            if state.item.is_some() {
                // Another send's item is still waiting: queue behind it.
                state.park(cx.waker());
                return Poll::Pending;
            }
            state.item = this.value.take();
            state.offered += 1;
            this.ticket = state.offered;
            if let Some(consumer) = &state.consumer {
                if !consumer.will_wake(cx.waker()) {
                    consumer.wake_by_ref();
                }
            }
        }
        state.park(cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for Offer<'_, T> {
    fn drop(&mut self) {
        if self.ticket == 0 {
            return;
        }
        let mut state = self.slot.lock();
        if state.taken < self.ticket && state.offered == self.ticket && state.item.is_some() {
            // Cancelled before the consumer took it: take the item back.
            state.item = None;
            state.offered -= 1;
            state.wake_waiting();
        }
    }
}

/// What one poll of a lazy generator produced.
enum Step<T, O> {
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
struct Lazy<T, Fut> {
    producer: Option<Pin<Box<Fut>>>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    slot: Arc<Rendezvous<T>>,
}

impl<T, Fut> Drop for Lazy<T, Fut> {
    fn drop(&mut self) {
        // A yielder the producer moved elsewhere must learn that nobody listens.
        self.slot.close(Closed::default());
    }
}

impl<T, Fut: Future> Lazy<T, Fut> {
    fn new<F: FnOnce(Yielder<T>) -> Fut>(producer: F) -> Self {
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

    fn attach(&mut self, ctx: &TaskContext) {
        self.slot.lock().context = Some(ctx.clone());
        self.cancelled = Some(Box::pin(ctx.token().cancelled_owned()));
    }

    fn is_done(&self) -> bool {
        self.producer.is_none()
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step<T, Fut::Output>>> {
        let Some(producer) = &mut self.producer else {
            return Poll::Ready(None);
        };
        if let Some(cancelled) = &mut self.cancelled {
            if cancelled.as_mut().poll(cx).is_ready() {
                let ctx = self.slot.lock().context.clone();
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
///     loop {
///         y.send(a).await?;
///         (a, b) = (b, a + b);
///     }
///     #[allow(unreachable_code)]
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
    /// waiting on something else.
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
            .field("done", &self.inner.producer.is_none())
            .finish_non_exhaustive()
    }
}

/// A lazy generator whose producer can fail: the stream [`try_generate`]
/// returns. Yields `Ok` items, then the producer's `Err` if it returned one,
/// then ends.
#[must_use = "streams do nothing unless polled"]
pub struct TryGenerate<T, E, Fut> {
    inner: Lazy<T, Fut>,
    error: PhantomData<fn() -> E>,
}

/// A lazy generator whose producer returns `Result<(), E>`: every sent item
/// comes out as `Ok`, and an `Err` the producer returns is the stream's last
/// item. Otherwise exactly like [`generate`].
///
/// [`send`](Yielder::send) fails with [`Closed`]; a producer can stop quietly
/// on it (`return Ok(())`), or use `?` if `E: From<Closed>` (true of
/// `Box<dyn Error>` and `anyhow::Error`). Once the consumer is gone or the
/// context is cancelled the stream has ended, so such an error goes nowhere.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::generator::{try_generate, Yielder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lines = try_generate(|y: Yielder<u32>| async move {
///     for text in ["1", "2", "x", "4"] {
///         let n: u32 = text.parse().map_err(|_| format!("bad number {text:?}"))?;
///         if y.send(n).await.is_err() {
///             return Ok(());
///         }
///     }
///     Ok(())
/// });
/// let all: Vec<Result<u32, String>> = lines.collect().await;
/// assert_eq!(all, [Ok(1), Ok(2), Err("bad number \"x\"".to_string())]);
/// # }
/// ```
pub fn try_generate<T, E, F, Fut>(producer: F) -> TryGenerate<T, E, Fut>
where
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    TryGenerate {
        inner: Lazy::new(producer),
        error: PhantomData,
    }
}

impl<T, E, Fut: Future> TryGenerate<T, E, Fut> {
    /// Binds the generator to `ctx`, as [`Generate::context`] does. After a
    /// cancellation the stream ends without an `Err` item: the consumer
    /// cancelled, it knows why.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Yielder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// ctx.cancel();
    /// let s = try_generate(|y: Yielder<u8>| async move {
    ///     y.send(1).await.map_err(|closed| closed.to_string())
    /// })
    /// .context(&ctx);
    /// assert_eq!(s.count().await, 0);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.inner.attach(ctx);
        self
    }
}

impl<T, E, Fut> Stream for TryGenerate<T, E, Fut>
where
    Fut: Future<Output = Result<(), E>>,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(self.inner.poll_step(cx)) {
            Some(Step::Item(item)) => Poll::Ready(Some(Ok(item))),
            Some(Step::Returned(Err(error))) => Poll::Ready(Some(Err(error))),
            Some(Step::Returned(Ok(())) | Step::Cancelled) | None => Poll::Ready(None),
        }
    }
}

impl<T, E, Fut> FusedStream for TryGenerate<T, E, Fut>
where
    Fut: Future<Output = Result<(), E>>,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_done()
    }
}

impl<T, E, Fut> fmt::Debug for TryGenerate<T, E, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryGenerate")
            .field("done", &self.inner.producer.is_none())
            .finish_non_exhaustive()
    }
}
