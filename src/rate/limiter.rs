//! [`RateLimiter`]: one quota, shared by every clone, for streams and for plain
//! calls alike.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::gcra::{Gcra, Reservation};
use super::{Rate, RateLimitError};
use crate::context::{ContextError, TaskContext};

/// A rate limiter for one quota (Go's `rate.Limiter`), on Tokio's clock.
///
/// Clones share the quota: hand one to every task, or to several streams with
/// [`rate_limit_shared`](crate::ConcurrentStreamExt::rate_limit_shared), and
/// their sum stays within the rate. A clone can carry its own
/// [`context`](Self::context): waits through it end when that context is
/// cancelled, and fail at once when they could not finish before its deadline.
///
/// A waiter holds its place: [`until_ready`](Self::until_ready) (and a
/// stream that has to delay an item) reserves its permits, when it starts to
/// wait, for the instant they will be free — Go's reservations — so callers
/// that come later, [`check`](Self::check) included, are judged after it and
/// can never starve it; waiters are served in the order they came, and a
/// large [`until_n_ready`](Self::until_n_ready) is not overtaken by small
/// ones. A wait given up early (its context cancelled, its future or stream
/// dropped) gives its permits back, less any reserved after it, as Go's
/// `Reservation.Cancel` does.
///
/// The rate can change while the limiter runs ([`set_rate`](Self::set_rate),
/// [`set_burst`](Self::set_burst)), for every clone at once;
/// [`Rate::unlimited`] switches the limit off.
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
    gcra: Arc<Gcra>,
    context: Option<TaskContext>,
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
            gcra: Arc::new(Gcra::new(rate)),
            // The crate's one context rule: the current one, if any.
            context: crate::internal::ambient_context(None),
        }
    }

    /// This limiter (the same quota) with `ctx` attached, in place of the one
    /// it inherited where it was built (the crate's
    /// [context rule](crate#contexts-one-rule)): a wait ends with
    /// [`RateLimitError::Context`] when `ctx` is cancelled, fails at once with
    /// [`RateLimitError::WouldExceedDeadline`] when it could not finish by
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

    /// The rate this limiter enforces now (the last one set, for every
    /// clone).
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
        self.gcra.rate()
    }

    /// Puts `rate` (its interval and its burst) in force for every clone of
    /// this limiter and every stream on it, from the next permit on (Go's
    /// `SetLimit`, and `SetBurst`): the permits available now are kept, up
    /// to the new burst, and refill at the new rate. Waits already under way
    /// keep the instant they reserved. [`Rate::unlimited`] switches the
    /// limit off; switching it back on starts with a full burst.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(1));
    /// let shared = limiter.clone();
    /// limiter.check().unwrap();
    /// shared.set_rate(Rate::per_second(10));
    /// let start = tokio::time::Instant::now();
    /// limiter.until_ready().await.unwrap();
    /// assert_eq!(start.elapsed(), Duration::from_millis(100), "the new rate, for every clone");
    /// # }
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        self.gcra.set(rate);
    }

    /// Changes only the burst, for every clone, from the next permit on (Go's
    /// `SetBurst`): the permits available now are kept, up to the new burst.
    ///
    /// # Panics
    ///
    /// If `burst` is 0 (nothing could ever pass; switch the limit off with
    /// [`Rate::unlimited`], or hold callers back with a context).
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(10).burst(2));
    /// limiter.set_burst(5);
    /// assert_eq!(limiter.rate().burst_size(), 5);
    /// assert!(limiter.check_n(5).is_err(), "two permits were there; up to five refill");
    /// assert!(limiter.check_n(2).is_ok());
    /// # }
    /// ```
    pub fn set_burst(&self, burst: u32) {
        assert!(burst > 0, "`set_burst(n)`: `n` must be at least 1, got 0");
        self.gcra.set_burst(burst);
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
        self.gcra.check(1)
    }

    /// Takes `cost` permits at once if the quota allows it now; a zero cost
    /// always passes. Never waits.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check), plus [`RateLimitError::ExceedsBurst`] when
    /// `cost` is more than the burst (never under [`Rate::unlimited`]).
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
    /// The permit is reserved when the wait begins, for the instant it will
    /// be free, so the caller holds its place against everyone who comes
    /// later, and a late wake-up does not slow the schedule: see
    /// [`Rate`](super::Rate#keeping-the-pace-on-the-real-clock).
    ///
    /// # Errors
    ///
    /// Only with an attached [`context`](Self::context):
    /// [`RateLimitError::Context`] when it is cancelled before the permit
    /// comes (the permit is given back), [`RateLimitError::WouldExceedDeadline`]
    /// (at once, without sleeping or reserving) when the permit would come
    /// after its deadline — one that comes exactly at the deadline is
    /// waited for, as in Go.
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
    /// `Limiter.WaitN`), holding its place as [`until_ready`](Self::until_ready)
    /// does. Dropping the future before it completes gives the permits back.
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
        self.refuse_if_cancelled()?;
        let ctx = self.context.as_ref();
        let Some(reservation) = self.reserve(cost, ctx.and_then(TaskContext::deadline))? else {
            return Ok(());
        };
        let ready_at = reservation.ready_at();
        match ctx {
            None => tokio::time::sleep_until(ready_at).await,
            Some(ctx) => tokio::select! {
                // A wait ending on the deadline itself is allowed.
                biased;
                () = tokio::time::sleep_until(ready_at) => {}
                // Dropping the reservation gives the permits back.
                () = ctx.cancelled() => return Err(context_error(ctx)),
            },
        }
        reservation.keep();
        Ok(())
    }

    /// Takes `cost` permits now if they are free (`Ok(None)`), or reserves
    /// them for the instant they will be (`Ok(Some(..))`), unless that is
    /// after `not_after`. Ignores the context, as [`take`](Self::take) does.
    pub(crate) fn reserve(
        &self,
        cost: u32,
        not_after: Option<Instant>,
    ) -> Result<Option<Reservation>, RateLimitError> {
        self.gcra.reserve(cost, not_after)
    }

    /// Takes `cost` permits, ignoring any context: what the stream operators
    /// use after checking the context themselves.
    #[inline]
    pub(crate) fn take(&self, cost: u32) -> Result<(), RateLimitError> {
        if cost == 0 {
            return Ok(());
        }
        self.gcra.check(cost)
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
            .field("rate", &self.rate())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The reason a cancelled context reports, as a rate-limit error.
pub(crate) fn context_error(ctx: &TaskContext) -> RateLimitError {
    RateLimitError::Context(ctx.err().unwrap_or(ContextError::Cancelled))
}

/// Whether waiting until `ready_at` would run past `ctx`'s deadline: such a
/// wait fails at once (Go's `WaitN`) rather than sleep for nothing. A wait
/// ending exactly at the deadline goes ahead, as in Go.
pub(crate) fn deadline_check(
    ready_at: Instant,
    ctx: Option<&TaskContext>,
) -> Result<(), RateLimitError> {
    match ctx.and_then(TaskContext::deadline) {
        Some(deadline) if ready_at > deadline => {
            Err(RateLimitError::WouldExceedDeadline { ready_at, deadline })
        }
        _ => Ok(()),
    }
}

/// Sleeps until `ready_at`, unless `ctx` is cancelled first or its deadline
/// comes before `ready_at` (then fails at once).
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
        // A wait ending on the deadline itself is allowed.
        biased;
        () = tokio::time::sleep_until(ready_at) => Ok(()),
        () = ctx.cancelled() => Err(context_error(ctx)),
    }
}
