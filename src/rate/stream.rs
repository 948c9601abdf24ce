//! [`RateLimit`]: the stream operators' output, with its policy for what is
//! over the quota — delay it, drop it ([`Discard`]) or hand it back ([`Fail`]).

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{PollSemaphore, WaitForCancellationFutureOwned};

use super::limiter::{context_error, deadline_check};
use super::{KeyedRateLimiter, RateLimitError, RateLimiter};
use crate::context::TaskContext;

mod sealed {
    pub trait Sealed {}
}

/// What a [`RateLimit`] stream checks each item against: a [`RateLimiter`]
/// (one permit per item), [`Weighted`] (a cost per item) or [`Keyed`] (a quota
/// per key). Sealed: the operators on
/// [`ConcurrentStreamExt`](crate::ConcurrentStreamExt) build these for you.
pub trait Gate<T>: sealed::Sealed {
    /// What the gate needs to know about an item (its cost, its key),
    /// worked out once per item however often the item is checked.
    #[doc(hidden)]
    type Ticket;
    #[doc(hidden)]
    fn ticket(&mut self, item: &T) -> Self::Ticket;
    #[doc(hidden)]
    fn try_pass(&self, ticket: &Self::Ticket) -> Result<(), RateLimitError>;
    #[doc(hidden)]
    fn task_context(&self) -> Option<&TaskContext>;
    #[doc(hidden)]
    fn set_context(&mut self, ctx: &TaskContext);
    /// The queue waiters join to be served in turn, if the gate has one.
    #[doc(hidden)]
    fn turn(&self) -> Option<&Arc<Semaphore>>;
}

impl sealed::Sealed for RateLimiter {}

impl<T> Gate<T> for RateLimiter {
    type Ticket = ();

    #[inline]
    fn ticket(&mut self, _: &T) {}

    #[inline]
    fn try_pass(&self, (): &()) -> Result<(), RateLimitError> {
        self.take(1)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        RateLimiter::task_context(self)
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        RateLimiter::set_context(self, ctx);
    }

    fn turn(&self) -> Option<&Arc<Semaphore>> {
        Some(RateLimiter::turn(self))
    }
}

/// The gate of [`rate_limit_weighted`](crate::ConcurrentStreamExt::rate_limit_weighted):
/// a limiter and the function that prices each item.
pub struct Weighted<F> {
    limiter: RateLimiter,
    cost: F,
}

impl<F> sealed::Sealed for Weighted<F> {}

impl<T, F: FnMut(&T) -> u32> Gate<T> for Weighted<F> {
    type Ticket = u32;

    fn ticket(&mut self, item: &T) -> u32 {
        (self.cost)(item)
    }

    fn try_pass(&self, cost: &u32) -> Result<(), RateLimitError> {
        self.limiter.take(*cost)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        self.limiter.task_context()
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        self.limiter.set_context(ctx);
    }

    fn turn(&self) -> Option<&Arc<Semaphore>> {
        Some(self.limiter.turn())
    }
}

/// The gate of [`rate_limit_by`](crate::ConcurrentStreamExt::rate_limit_by):
/// a keyed limiter and the function that names each item's key.
pub struct Keyed<K: Hash + Eq + Clone, F> {
    limiter: KeyedRateLimiter<K>,
    key: F,
}

impl<K: Hash + Eq + Clone, F> sealed::Sealed for Keyed<K, F> {}

impl<T, K: Hash + Eq + Clone, F: FnMut(&T) -> K> Gate<T> for Keyed<K, F> {
    type Ticket = K;

    fn ticket(&mut self, item: &T) -> K {
        (self.key)(item)
    }

    fn try_pass(&self, key: &K) -> Result<(), RateLimitError> {
        self.limiter.take(key, 1)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        self.limiter.task_context()
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        self.limiter.set_context(ctx);
    }

    /// No queue: one would make waiters for different keys wait on each other.
    fn turn(&self) -> Option<&Arc<Semaphore>> {
        None
    }
}

/// The default policy: an item over the quota waits until it fits, holding
/// back the items behind it (order is kept).
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

/// The policy set by [`RateLimit::drop_over_quota`]: an item over the quota is
/// dropped at once and counted.
#[derive(Clone, Debug, Default)]
pub struct Discard {
    dropped: DropCounter,
}

/// The policy set by [`RateLimit::fail_over_quota`]: an item over the quota is
/// yielded at once as `Err(RateLimited)`, never delayed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fail;

/// How many items a [`RateLimit`] with [`drop_over_quota`](RateLimit::drop_over_quota)
/// has dropped; a handle that stays readable after the stream is consumed.
///
/// ```
/// use tokio_conc::rate::DropCounter;
/// assert_eq!(DropCounter::default().get(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    /// The number of items dropped so far.
    ///
    /// ```
    /// assert_eq!(tokio_conc::rate::DropCounter::default().get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// An item refused under the [`Fail`] policy, with why.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let out: Vec<_> = futures::stream::iter(["a", "b"])
///     .rate_limit(Rate::per_second(1))
///     .fail_over_quota()
///     .collect()
///     .await;
/// assert_eq!(out[0], Ok("a"));
/// let refused = out[1].as_ref().unwrap_err();
/// assert_eq!(*refused.item(), "b");
/// assert!(refused.error().ready_at().is_some());
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimited<T> {
    item: T,
    error: RateLimitError,
}

impl<T> RateLimited<T> {
    /// The refused item.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let refused = s.next().await.unwrap().unwrap_err();
    /// assert_eq!(*refused.item(), 2);
    /// # }
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Why it was refused: [`RateLimitError::OverQuota`] (with when it would
    /// pass) or [`RateLimitError::ExceedsBurst`].
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// use tokio_conc::rate::RateLimitError;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([5_u32]).rate_limit_weighted(Rate::per_second(1).burst(2), |c| *c).fail_over_quota());
    /// let refused = s.next().await.unwrap().unwrap_err();
    /// assert_eq!(refused.error(), &RateLimitError::ExceedsBurst { cost: 5, burst: 2 });
    /// # }
    /// ```
    pub fn error(&self) -> &RateLimitError {
        &self.error
    }

    /// The refused item, to retry or report.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let item: i32 = s.next().await.unwrap().unwrap_err().into_item();
    /// assert_eq!(item, 2);
    /// # }
    /// ```
    pub fn into_item(self) -> T {
        self.item
    }

    /// The refused item and why.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let (item, why) = s.next().await.unwrap().unwrap_err().into_parts();
    /// assert_eq!(item, 2);
    /// assert!(why.ready_at().is_some());
    /// # }
    /// ```
    pub fn into_parts(self) -> (T, RateLimitError) {
        (self.item, self.error)
    }
}

impl<T> fmt::Debug for RateLimited<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for RateLimited<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item refused: {}", self.error)
    }
}

impl<T> Error for RateLimited<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

/// What a waiting stream waits on, allocated on its first wait and reused:
/// its turn in the limiter's queue, then the instant its item may pass, or
/// the cancellation of its context.
#[derive(Default)]
struct Timer {
    queue: Option<PollSemaphore>,
    /// Held from the moment this stream's turn comes until its item passes.
    turn: Option<OwnedSemaphorePermit>,
    /// Waiting in the queue, not yet for the sleep.
    queued: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Timer {
    fn set(&mut self, ready_at: Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(ready_at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(ready_at))),
        }
    }

    /// After a refusal: queue for a turn first if the gate has a queue and
    /// this stream does not hold the turn yet; sleep until `ready_at` otherwise.
    fn wait(&mut self, ready_at: Instant, turn: Option<&Arc<Semaphore>>) {
        match turn {
            Some(turn) if self.turn.is_none() => {
                self.queue
                    .get_or_insert_with(|| PollSemaphore::new(Arc::clone(turn)));
                self.queued = true;
            }
            _ => self.set(ready_at),
        }
    }

    /// Ready when it is time to check the held item again.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.queued {
            let queue = self.queue.as_mut().expect("queued with a queue");
            let turn = ready!(queue.poll_acquire(cx)).expect("the turn semaphore is never closed");
            self.turn = Some(turn);
            self.queued = false;
            // Our turn: check at once, the allowance may be free already.
            return Poll::Ready(());
        }
        self.poll_sleep(cx)
    }

    /// Gives up the turn (the item passed, or the stream stopped).
    fn done(&mut self) {
        self.turn = None;
        self.queued = false;
    }

    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }

    fn poll_cancelled(&mut self, cx: &mut Context<'_>, ctx: &TaskContext) -> Poll<()> {
        self.cancelled
            .get_or_insert_with(|| Box::pin(ctx.token().cancelled_owned()))
            .as_mut()
            .poll(cx)
    }
}

pin_project! {
    /// A rate-limited stream: what `rate_limit`, `rate_limit_shared`,
    /// `rate_limit_weighted` and `rate_limit_by` on
    /// [`ConcurrentStreamExt`](crate::ConcurrentStreamExt) return.
    ///
    /// `P` is the policy for an item over the quota: [`Delay`] (the default;
    /// the item waits, order is kept), [`Discard`] (set with
    /// [`drop_over_quota`](Self::drop_over_quota)) or [`Fail`] (set with
    /// [`fail_over_quota`](Self::fail_over_quota); items become `Result`s).
    ///
    /// With a [`context`](Self::context), the stream ends as soon as the context
    /// is cancelled — also in the middle of a wait, dropping the waiting item —
    /// and a wait that would last past the context's deadline ends the stream at
    /// once instead of sleeping. [`stopped_by`](Self::stopped_by) says why.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_timeout(std::time::Duration::from_millis(250));
    /// let mut s = std::pin::pin!(
    ///     futures::stream::iter(0..10).rate_limit(Rate::per_second(10)).context(&ctx)
    /// );
    /// let mut got = Vec::new();
    /// while let Some(x) = s.next().await {
    ///     got.push(x);
    /// }
    /// // 0 ms, 100 ms, 200 ms; the next would pass at 300 ms, after the deadline.
    /// assert_eq!(got, [0, 1, 2]);
    /// assert!(s.stopped_by().is_some());
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct RateLimit<S, G, P = Delay>
    where
        S: Stream,
        G: Gate<S::Item>,
    {
        #[pin]
        stream: S,
        gate: G,
        policy: P,
        // An item pulled but not yet let through, with what its gate needs.
        held: Option<(S::Item, G::Ticket)>,
        timer: Timer,
        stopped: Option<RateLimitError>,
        done: bool,
    }
}

/// What came of asking for the next item.
enum Admit<T, K> {
    Passed(T),
    Refused {
        item: T,
        ticket: K,
        error: RateLimitError,
    },
    /// The input ended.
    Ended,
    /// The context stopped the stream.
    Stopped(RateLimitError),
}

impl<S, G> RateLimit<S, G, Delay>
where
    S: Stream,
    G: Gate<S::Item>,
{
    pub(crate) fn new(stream: S, gate: G) -> Self {
        RateLimit {
            stream,
            gate,
            policy: Delay,
            held: None,
            timer: Timer::default(),
            stopped: None,
            done: false,
        }
    }

    /// Drops the items over the quota instead of delaying them, and counts them
    /// ([`dropped`](RateLimit::dropped)). Never waits. Under
    /// [`rate_limit_weighted`](crate::ConcurrentStreamExt::rate_limit_weighted),
    /// an item costing more than the burst is dropped too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // An item every 100 ms, a quota of 5 per second: half of them pass.
    /// let ticks = tokio_stream::wrappers::IntervalStream::new(
    ///     tokio::time::interval(Duration::from_millis(100)),
    /// );
    /// let limited = ticks.take(20).rate_limit(Rate::per_second(5)).drop_over_quota();
    /// let dropped = limited.drop_counter();
    /// assert_eq!(limited.count().await, 10);
    /// assert_eq!(dropped.get(), 10);
    /// # }
    /// ```
    pub fn drop_over_quota(self) -> RateLimit<S, G, Discard> {
        self.with_policy(Discard::default())
    }

    /// Yields the items over the quota at once as `Err(`[`RateLimited`]`)`
    /// (which gives the item back, with when it would have passed), and the
    /// others as `Ok`. Never waits. Under
    /// [`rate_limit_weighted`](crate::ConcurrentStreamExt::rate_limit_weighted),
    /// an item costing more than the burst comes back as
    /// [`RateLimitError::ExceedsBurst`].
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let results: Vec<_> = futures::stream::iter(0..4)
    ///     .rate_limit(Rate::per_second(1).burst(2))
    ///     .fail_over_quota()
    ///     .collect()
    ///     .await;
    /// let passed: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    /// assert_eq!(passed, [&0, &1]);
    /// # }
    /// ```
    pub fn fail_over_quota(self) -> RateLimit<S, G, Fail> {
        self.with_policy(Fail)
    }
}

impl<S, G, P> RateLimit<S, G, P>
where
    S: Stream,
    G: Gate<S::Item>,
{
    fn with_policy<Q>(self, policy: Q) -> RateLimit<S, G, Q> {
        RateLimit {
            stream: self.stream,
            gate: self.gate,
            policy,
            held: self.held,
            timer: self.timer,
            stopped: self.stopped,
            done: self.done,
        }
    }

    /// Binds the stream to `ctx`: it ends when `ctx` is cancelled (even while
    /// an item waits), and a wait that could not finish before `ctx`'s deadline
    /// ends it at once. Replaces a context the limiter carried.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let limited = futures::stream::iter(0..3).rate_limit(Rate::per_second(1)).context(&ctx);
    /// ctx.cancel();
    /// assert_eq!(limited.count().await, 0);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.gate.set_context(ctx);
        // A watcher made for an earlier context would watch the wrong one.
        self.timer.cancelled = None;
        self
    }

    /// Why the stream ended early, if its context ended it:
    /// [`RateLimitError::Context`] (cancelled) or
    /// [`RateLimitError::WouldExceedDeadline`] (the next item could not pass
    /// before the deadline). `None` while running and after the input ended.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::rate::RateLimitError;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// ctx.cancel();
    /// let mut s = std::pin::pin!(futures::stream::iter([1]).rate_limit(Rate::per_second(1)).context(&ctx));
    /// assert_eq!(s.next().await, None);
    /// assert_eq!(s.stopped_by(), Some(&RateLimitError::Context(ContextError::Cancelled)));
    /// # }
    /// ```
    pub fn stopped_by(&self) -> Option<&RateLimitError> {
        self.stopped.as_ref()
    }

    /// The input stream.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1));
    /// assert_eq!(futures::Stream::size_hint(s.get_ref()), (2, Some(2)));
    /// # }
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S, G> RateLimit<S, G, Discard>
where
    S: Stream,
    G: Gate<S::Item>,
{
    /// How many items were dropped for being over the quota.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut s = std::pin::pin!(
    ///     futures::stream::iter(0..5).rate_limit(Rate::per_second(1).burst(2)).drop_over_quota()
    /// );
    /// while s.next().await.is_some() {}
    /// assert_eq!(s.dropped(), 3);
    /// # }
    /// ```
    pub fn dropped(&self) -> u64 {
        self.policy.dropped.get()
    }

    /// A handle on the drop count that stays readable after the stream is
    /// consumed (by `collect`, say).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = futures::stream::iter(0..5).rate_limit(Rate::per_second(1)).drop_over_quota();
    /// let dropped = s.drop_counter();
    /// assert_eq!(s.collect::<Vec<_>>().await, [0]);
    /// assert_eq!(dropped.get(), 4);
    /// # }
    /// ```
    pub fn drop_counter(&self) -> DropCounter {
        self.policy.dropped.clone()
    }
}

/// Pulls the next item (or retries the held one) and asks the gate.
fn poll_admit<S, G>(
    stream: Pin<&mut S>,
    gate: &mut G,
    held: &mut Option<(S::Item, G::Ticket)>,
    timer: &mut Timer,
    cx: &mut Context<'_>,
) -> Poll<Admit<S::Item, G::Ticket>>
where
    S: Stream,
    G: Gate<S::Item>,
{
    if let Some(ctx) = gate.task_context().filter(|ctx| ctx.is_cancelled()) {
        return Poll::Ready(Admit::Stopped(context_error(ctx)));
    }
    let (item, ticket) = match held.take() {
        Some(held) => held,
        None => match stream.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let ticket = gate.ticket(&item);
                (item, ticket)
            }
            Poll::Ready(None) => return Poll::Ready(Admit::Ended),
            Poll::Pending => {
                // An idle input must not keep a cancelled stream alive.
                if let Some(ctx) = gate.task_context() {
                    if timer.poll_cancelled(cx, ctx).is_ready() {
                        return Poll::Ready(Admit::Stopped(context_error(ctx)));
                    }
                }
                return Poll::Pending;
            }
        },
    };
    Poll::Ready(match gate.try_pass(&ticket) {
        Ok(()) => Admit::Passed(item),
        Err(error) => Admit::Refused {
            item,
            ticket,
            error,
        },
    })
}

fn stop<T>(
    stopped: &mut Option<RateLimitError>,
    done: &mut bool,
    why: RateLimitError,
) -> Poll<Option<T>> {
    *stopped = Some(why);
    *done = true;
    Poll::Ready(None)
}

impl<S, G> Stream for RateLimit<S, G, Delay>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            if this.held.is_some() {
                if let Some(ctx) = this.gate.task_context() {
                    if this.timer.poll_cancelled(cx, ctx).is_ready() {
                        *this.held = None;
                        this.timer.done();
                        return stop(this.stopped, this.done, context_error(ctx));
                    }
                }
                ready!(this.timer.poll_ready(cx));
            }
            let admit = ready!(poll_admit(
                this.stream.as_mut(),
                this.gate,
                this.held,
                this.timer,
                cx
            ));
            match admit {
                Admit::Passed(item) => {
                    this.timer.done();
                    return Poll::Ready(Some(item));
                }
                Admit::Refused {
                    item,
                    ticket,
                    error: RateLimitError::OverQuota { ready_at },
                } => {
                    if let Err(why) = deadline_check(ready_at, this.gate.task_context()) {
                        this.timer.done();
                        return stop(this.stopped, this.done, why);
                    }
                    *this.held = Some((item, ticket));
                    this.timer.wait(ready_at, this.gate.turn());
                }
                Admit::Refused {
                    error: RateLimitError::ExceedsBurst { cost, burst },
                    ..
                } => {
                    this.timer.done();
                    panic!(
                        "rate_limit_weighted: an item costs {cost} but the burst is {burst}, so \
                         it could never pass; raise the burst, or use .fail_over_quota() to get \
                         such items back as errors"
                    )
                }
                Admit::Refused { error, .. } | Admit::Stopped(error) => {
                    this.timer.done();
                    return stop(this.stopped, this.done, error);
                }
                Admit::Ended => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, false)
    }
}

impl<S, G> Stream for RateLimit<S, G, Discard>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            let admit = ready!(poll_admit(
                this.stream.as_mut(),
                this.gate,
                this.held,
                this.timer,
                cx
            ));
            match admit {
                Admit::Passed(item) => return Poll::Ready(Some(item)),
                Admit::Refused { .. } => {
                    this.policy.dropped.add_one();
                    // A fast input could be dropped item after item without
                    // end: give the runtime its turn now and then.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                }
                Admit::Stopped(why) => return stop(this.stopped, this.done, why),
                Admit::Ended => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, true)
    }
}

impl<S, G> Stream for RateLimit<S, G, Fail>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = Result<S::Item, RateLimited<S::Item>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let admit = ready!(poll_admit(
            this.stream.as_mut(),
            this.gate,
            this.held,
            this.timer,
            cx
        ));
        match admit {
            Admit::Passed(item) => Poll::Ready(Some(Ok(item))),
            Admit::Refused { item, error, .. } => {
                Poll::Ready(Some(Err(RateLimited { item, error })))
            }
            Admit::Stopped(why) => stop(this.stopped, this.done, why),
            Admit::Ended => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, false)
    }
}

fn size_hint<S, G, P>(s: &RateLimit<S, G, P>, drops: bool) -> (usize, Option<usize>)
where
    S: Stream,
    G: Gate<S::Item>,
{
    if s.done {
        return (0, Some(0));
    }
    let held = usize::from(s.held.is_some());
    let (lower, upper) = s.stream.size_hint();
    // A context may end the stream early; a drop policy may drop anything.
    let lower = if drops || s.gate.task_context().is_some() {
        0
    } else {
        lower.saturating_add(held)
    };
    (lower, upper.and_then(|upper| upper.checked_add(held)))
}

impl<S, G, P> FusedStream for RateLimit<S, G, P>
where
    S: Stream,
    G: Gate<S::Item>,
    RateLimit<S, G, P>: Stream,
{
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<S, G, P> fmt::Debug for RateLimit<S, G, P>
where
    S: Stream + fmt::Debug,
    G: Gate<S::Item>,
    P: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("stream", &self.stream)
            .field("policy", &self.policy)
            .field("waiting", &self.held.is_some())
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// `s.rate_limit(rate)` and `s.rate_limit_shared(&limiter)`.
pub(crate) fn rate_limit<S: Stream>(stream: S, limiter: RateLimiter) -> RateLimit<S, RateLimiter> {
    RateLimit::new(stream, limiter)
}

/// `s.rate_limit_weighted(limiter, cost)`.
pub(crate) fn weighted<S, F>(stream: S, limiter: RateLimiter, cost: F) -> RateLimit<S, Weighted<F>>
where
    S: Stream,
    F: FnMut(&S::Item) -> u32,
{
    RateLimit::new(stream, Weighted { limiter, cost })
}

/// `s.rate_limit_by(key, limiter)`.
pub(crate) fn keyed<S, K, F>(
    stream: S,
    key: F,
    limiter: KeyedRateLimiter<K>,
) -> RateLimit<S, Keyed<K, F>>
where
    S: Stream,
    K: Hash + Eq + Clone,
    F: FnMut(&S::Item) -> K,
{
    RateLimit::new(stream, Keyed { limiter, key })
}
