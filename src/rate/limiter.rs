//! [`RateLimiter`]: one quota, shared by every clone, for streams and for plain
//! calls alike.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::InsufficientCapacity;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::clock::{ScheduleClock, checked_as_of};
use super::turns::Turns;
use super::{Rate, RateLimitError, TokioInstant};
use crate::context::{ContextError, TaskContext};

type Gcra =
    governor::RateLimiter<NotKeyed, InMemoryState, ScheduleClock, NoOpMiddleware<TokioInstant>>;

/// A rate limiter for one quota (Go's `rate.Limiter`), on Tokio's clock.
///
/// Clones share the quota: hand one to every task, or to several streams with
/// [`rate_limit_shared`](crate::ConcurrentStreamExt::rate_limit_shared), and
/// their sum stays within the rate. A clone can carry its own
/// [`context`](Self::context): waits through it end when that context is
/// cancelled, and fail at once when they could not finish before its deadline.
///
/// Waiters take turns: whoever has to wait joins a first-come, first-served
/// queue, so no waiting task or stream can be starved by the others, and a
/// large [`until_n_ready`](Self::until_n_ready) is not overtaken forever by
/// small ones. A [`check`](Self::check) never queues: it takes what is free
/// right now. A waiter that is no longer polled (a stream abandoned half-way
/// through a wait) holds up the queue only until its wake-up time plus a
/// grace (the interval, at least 100 ms); then the others stop queueing
/// behind it rather than wait for ever.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tokio_conc::rate::{Rate, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::new(Rate::every(Duration::from_millis(200)));
/// let start = Instant::now();
/// for _ in 0..3 {
///     limiter.until_ready().await.unwrap();
/// }
/// assert_eq!(start.elapsed(), Duration::from_millis(400));
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
    rate: Rate,
    context: Option<TaskContext>,
}

struct Shared {
    gcra: Gcra,
    turns: Turns,
}

impl RateLimiter {
    /// A limiter for `rate`, with its whole burst available. Built where a
    /// [`TaskContext`] is current, it is bound to it (the crate's
    /// [context rule](crate#contexts-one-rule)); [`context`](Self::context)
    /// sets another.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(5).burst(2));
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_err());
    /// # }
    /// ```
    pub fn new(rate: Rate) -> Self {
        RateLimiter {
            shared: Arc::new(Shared {
                gcra: Gcra::direct_with_clock(rate.quota(), ScheduleClock),
                turns: Turns::new(&rate),
            }),
            rate,
            // The crate's one context rule: the current one, if any.
            context: crate::internal::ambient_context(None),
        }
    }

    /// This limiter (the same quota) with `ctx` attached, in place of the one
    /// it inherited where it was built (the crate's
    /// [context rule](crate#contexts-one-rule)): a wait ends with
    /// [`RateLimitError::Context`] when `ctx` is cancelled, fails at once with
    /// [`RateLimitError::WouldExceedDeadline`] when it could not finish before
    /// `ctx`'s deadline, and a cancelled `ctx` refuses every permit.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::rate::RateLimitError;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let limiter = RateLimiter::new(Rate::per_second(1)).context(&ctx);
    /// ctx.cancel();
    /// assert_eq!(
    ///     limiter.until_ready().await,
    ///     Err(RateLimitError::Context(ContextError::Cancelled))
    /// );
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The context waits through this handle are bound to: the one attached
    /// by [`context`](Self::context), else the one current where the limiter
    /// was built, if any.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(RateLimiter::new(Rate::per_second(1)).task_context().is_none());
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// The rate this limiter enforces.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let rate = Rate::per_second(3);
    /// assert_eq!(RateLimiter::new(rate).rate(), rate);
    /// # }
    /// ```
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one permit if the quota allows it now; never waits (Go's
    /// `Limiter.Allow`, with the time it would take on refusal).
    ///
    /// # Errors
    ///
    /// [`RateLimitError::OverQuota`] with the instant it could pass, or
    /// [`RateLimitError::Context`] if the attached context is cancelled.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(1));
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_err());
    /// # }
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), RateLimitError> {
        self.refuse_if_cancelled()?;
        self.shared.gcra.check().map_err(RateLimitError::over_quota)
    }

    /// Takes `cost` permits at once if the quota allows it now; a zero cost
    /// always passes. Never waits.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check), plus [`RateLimitError::ExceedsBurst`] when
    /// `cost` is more than the burst.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(10).burst(5));
    /// assert!(limiter.check_n(4).is_ok());
    /// assert!(limiter.check_n(2).is_err());
    /// assert!(limiter.check_n(1).is_ok());
    /// # }
    /// ```
    pub fn check_n(&self, cost: u32) -> Result<(), RateLimitError> {
        self.refuse_if_cancelled()?;
        self.take(cost)
    }

    /// Waits until one permit is available and takes it (Go's `Limiter.Wait`).
    ///
    /// A caller that had to wait is charged as of the instant its permit was
    /// due, however late its task wakes up, so a loop of `until_ready` keeps
    /// the rate's pace: see
    /// [`Rate`](super::Rate#keeping-the-pace-on-the-real-clock).
    ///
    /// # Errors
    ///
    /// Only with an attached [`context`](Self::context):
    /// [`RateLimitError::Context`] when it is cancelled before the permit
    /// comes, [`RateLimitError::WouldExceedDeadline`] (at once, without
    /// sleeping) when the permit would come at or after its deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(2));
    /// let start = tokio::time::Instant::now();
    /// limiter.until_ready().await.unwrap();
    /// limiter.until_ready().await.unwrap();
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// # }
    /// ```
    pub async fn until_ready(&self) -> Result<(), RateLimitError> {
        self.until_n_ready(1).await
    }

    /// Waits until `cost` permits are available and takes them at once (Go's
    /// `Limiter.WaitN`).
    ///
    /// # Errors
    ///
    /// As [`until_ready`](Self::until_ready), plus
    /// [`RateLimitError::ExceedsBurst`] at once when `cost` is more than the
    /// burst — it could never pass, so it does not wait.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimitError, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(10).burst(4));
    /// limiter.until_n_ready(4).await.unwrap();
    /// let too_big = limiter.until_n_ready(5).await;
    /// assert_eq!(too_big, Err(RateLimitError::ExceedsBurst { cost: 5, burst: 4 }));
    /// # }
    /// ```
    pub async fn until_n_ready(&self, cost: u32) -> Result<(), RateLimitError> {
        let ready_at = match self.check_n(cost) {
            Err(RateLimitError::OverQuota { ready_at }) => ready_at,
            passed_or_failed => return passed_or_failed,
        };
        let ctx = self.context.as_ref();
        deadline_check(ready_at, ctx)?;
        let turn = self.wait_for_turn(ready_at).await?;
        // After sleeping until its turn, a waiter is charged as of the
        // instant it was due, not the (later) instant it woke up.
        let mut due = None;
        loop {
            self.refuse_if_cancelled()?;
            match self.take_as_of(cost, due) {
                Err(RateLimitError::OverQuota { ready_at }) => {
                    if turn.is_some() {
                        self.shared.turns.renew(ready_at);
                    }
                    wait_until(ready_at, ctx).await?;
                    due = Some(ready_at);
                }
                passed_or_failed => return passed_or_failed,
            }
        }
    }

    /// Queues behind the waiters already there. `None`: the waiter ahead let
    /// its lease run out, so this one goes on without a turn.
    async fn wait_for_turn(
        &self,
        ready_at: Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, RateLimitError> {
        let turns = &self.shared.turns;
        let acquire = Arc::clone(turns.permit()).acquire_owned();
        tokio::pin!(acquire);
        let mut patience = ready_at.max(turns.lease_until());
        loop {
            let cancelled = async {
                match &self.context {
                    Some(ctx) => ctx.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancelled => return Err(self.context.as_ref().map_or(
                    RateLimitError::Context(ContextError::Cancelled),
                    context_error,
                )),
                permit = &mut acquire => {
                    return Ok(Some(permit.expect("the turn semaphore is never closed")));
                }
                () = tokio::time::sleep_until(patience) => {
                    let lease = turns.lease_until();
                    if lease <= Instant::now() {
                        return Ok(None);
                    }
                    patience = lease;
                }
            }
        }
    }

    /// The queue of waiters, for streams that wait on this limiter.
    pub(crate) fn turns(&self) -> &Turns {
        &self.shared.turns
    }

    /// [`take`](Self::take) for a waiter that slept until `due`: charged as
    /// of `due` if it has passed, so the wake-up's lateness is not lost.
    #[inline]
    pub(crate) fn take_as_of(&self, cost: u32, due: Option<Instant>) -> Result<(), RateLimitError> {
        checked_as_of(due, || self.take(cost))
    }

    /// Takes `cost` permits, ignoring any context: what the stream operators
    /// use after checking the context themselves.
    #[inline]
    pub(crate) fn take(&self, cost: u32) -> Result<(), RateLimitError> {
        let Some(cost_nz) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        if cost == 1 {
            return self.shared.gcra.check().map_err(RateLimitError::over_quota);
        }
        match self.shared.gcra.check_n(cost_nz) {
            Ok(decision) => decision.map_err(RateLimitError::over_quota),
            Err(InsufficientCapacity(_)) => Err(RateLimitError::exceeds_burst(cost, &self.rate)),
        }
    }

    pub(crate) fn set_context(&mut self, ctx: &TaskContext) {
        self.context = Some(ctx.clone());
    }

    #[inline]
    fn refuse_if_cancelled(&self) -> Result<(), RateLimitError> {
        match &self.context {
            Some(ctx) if ctx.is_cancelled() => Err(context_error(ctx)),
            _ => Ok(()),
        }
    }
}

impl From<Rate> for RateLimiter {
    /// [`RateLimiter::new`].
    fn from(rate: Rate) -> Self {
        RateLimiter::new(rate)
    }
}

impl From<&RateLimiter> for RateLimiter {
    /// A clone: the same quota, shared.
    fn from(limiter: &RateLimiter) -> Self {
        limiter.clone()
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The reason a cancelled context reports, as a rate-limit error.
pub(crate) fn context_error(ctx: &TaskContext) -> RateLimitError {
    RateLimitError::Context(ctx.err().unwrap_or(ContextError::Cancelled))
}

/// Whether waiting until `ready_at` would run into `ctx`'s deadline: such a
/// wait fails at once (Go's `WaitN`) rather than sleep for nothing.
pub(crate) fn deadline_check(
    ready_at: Instant,
    ctx: Option<&TaskContext>,
) -> Result<(), RateLimitError> {
    match ctx.and_then(TaskContext::deadline) {
        Some(deadline) if ready_at >= deadline => {
            Err(RateLimitError::WouldExceedDeadline { ready_at, deadline })
        }
        _ => Ok(()),
    }
}

/// Sleeps until `ready_at`, unless `ctx` is cancelled first or its deadline
/// comes first (then fails at once).
pub(crate) async fn wait_until(
    ready_at: Instant,
    ctx: Option<&TaskContext>,
) -> Result<(), RateLimitError> {
    let Some(ctx) = ctx else {
        tokio::time::sleep_until(ready_at).await;
        return Ok(());
    };
    deadline_check(ready_at, Some(ctx))?;
    tokio::select! {
        biased;
        () = ctx.cancelled() => Err(context_error(ctx)),
        () = tokio::time::sleep_until(ready_at) => Ok(()),
    }
}
