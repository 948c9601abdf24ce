//! [`RateLimit`]: the stream operators' output, with its policy for what is
//! over the quota — delay it, drop it ([`Discard`]) or hand it back ([`Fail`]).

mod gate;
mod policy;
mod poll;
mod timer;

use std::fmt;
use std::hash::Hash;

use futures::Stream;
use pin_project_lite::pin_project;

use self::timer::Timer;
use super::{KeyedRateLimiter, RateLimitError, RateLimiter};
use crate::context::TaskContext;

pub use self::gate::{Gate, Keyed, Weighted};
pub use self::policy::{Delay, Discard, DropCounter, Fail, RateLimited};

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
    /// Bound to a context — set with [`context`](Self::context), else its
    /// limiter's, else the one current where it was built (the crate's
    /// [context rule](crate#contexts-one-rule)) — the stream ends as soon as the context
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
    #[project = RateLimitProj]
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

impl<S, G> RateLimit<S, G, Delay>
where
    S: Stream,
    G: Gate<S::Item>,
{
    /// A limiter with no context of its own binds the stream to the one
    /// current here, if any: the crate's one context rule.
    pub(crate) fn new(stream: S, mut gate: G) -> Self {
        if gate.task_context().is_none() {
            if let Some(ctx) = crate::internal::ambient_context(None) {
                gate.set_context(&ctx);
            }
        }
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
    /// ends it at once; [`stopped_by`](Self::stopped_by) says why.
    ///
    /// It replaces the context the stream had: its limiter's, else the one
    /// current where the stream was built (the crate's
    /// [context rule](crate#contexts-one-rule)).
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

    /// The context the stream is bound to: the one set with
    /// [`context`](Self::context), else its limiter's, else the one current
    /// where the stream was built.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = futures::stream::iter([1]).rate_limit(Rate::per_second(1));
    /// assert!(s.task_context().is_none());
    /// let ctx = TaskContext::background();
    /// let s = ctx.scope(async { futures::stream::iter([1]).rate_limit(Rate::per_second(1)) }).await;
    /// assert!(s.task_context().is_some(), "inherited from the scope");
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.gate.task_context()
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
    RateLimit::new(stream, Weighted::new(limiter, cost))
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
    F: Fn(&S::Item) -> K + Send + Sync + 'static,
{
    RateLimit::new(stream, Keyed::new(limiter, key))
}
