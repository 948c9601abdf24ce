//! [`RateLimitError`]: why a permit was refused.

use std::error::Error;
use std::fmt;

use governor::NotUntil;
use tokio::time::Instant;

use super::{Rate, TokioInstant};
use crate::context::ContextError;

/// Why a rate limiter refused a permit.
///
/// ```
/// use tokio_conc::rate::{Rate, RateLimitError, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::new(Rate::per_second(1).burst(2));
/// assert_eq!(
///     limiter.check_n(3),
///     Err(RateLimitError::ExceedsBurst { cost: 3, burst: 2 })
/// );
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Over the quota right now; the same request would pass at `ready_at`
    /// (if nobody else takes the allowance first).
    OverQuota {
        /// The earliest instant the request could pass.
        ready_at: Instant,
    },
    /// The request costs more than the burst, so it could never pass.
    ExceedsBurst {
        /// What the request costs.
        cost: u32,
        /// The most a limiter lets pass at once.
        burst: u32,
    },
    /// Waiting would last past the context's deadline, so the wait failed at
    /// once instead of sleeping (Go's `Limiter.WaitN`).
    WouldExceedDeadline {
        /// When the request could pass.
        ready_at: Instant,
        /// The context's deadline.
        deadline: Instant,
    },
    /// The context was cancelled (or its deadline passed) before the request
    /// could pass.
    Context(ContextError),
}

impl RateLimitError {
    /// When the request could pass, for the errors that know it.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(10));
    /// limiter.check().unwrap();
    /// let err = limiter.check().unwrap_err();
    /// let wait = err.ready_at().unwrap() - tokio::time::Instant::now();
    /// assert_eq!(wait.as_millis(), 100);
    /// # }
    /// ```
    pub fn ready_at(&self) -> Option<Instant> {
        match self {
            RateLimitError::OverQuota { ready_at }
            | RateLimitError::WouldExceedDeadline { ready_at, .. } => Some(*ready_at),
            _ => None,
        }
    }

    /// The context's error, for [`Context`](Self::Context): the context
    /// stopped the wait. Every error of the crate that a context can cause
    /// says so through a `context_error()` like this one (see the crate docs,
    /// "Contexts"). [`WouldExceedDeadline`](Self::WouldExceedDeadline) gives
    /// `None`: the context is still running; the wait was refused because it
    /// could not end in time.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let limiter = RateLimiter::new(Rate::per_second(1)).context(&ctx);
    /// limiter.check().unwrap();
    /// assert_eq!(limiter.check().unwrap_err().context_error(), None, "over quota");
    /// ctx.cancel();
    /// let err = limiter.until_ready().await.unwrap_err();
    /// assert_eq!(err.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn context_error(&self) -> Option<&ContextError> {
        match self {
            RateLimitError::Context(err) => Some(err),
            _ => None,
        }
    }

    pub(crate) fn over_quota(not_until: NotUntil<TokioInstant>) -> Self {
        RateLimitError::OverQuota {
            ready_at: not_until.earliest_possible().instant(),
        }
    }

    pub(crate) fn exceeds_burst(cost: u32, rate: &Rate) -> Self {
        RateLimitError::ExceedsBurst {
            cost,
            burst: rate.burst_size(),
        }
    }
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitError::OverQuota { ready_at } => {
                let wait = ready_at.saturating_duration_since(Instant::now());
                write!(f, "rate limit exceeded; ready in {wait:?}")
            }
            RateLimitError::ExceedsBurst { cost, burst } => {
                write!(
                    f,
                    "cost {cost} exceeds the burst {burst}: it can never pass"
                )
            }
            RateLimitError::WouldExceedDeadline { ready_at, deadline } => {
                let late = ready_at.saturating_duration_since(*deadline);
                write!(f, "waiting would exceed the context deadline by {late:?}")
            }
            RateLimitError::Context(err) => write!(f, "rate limit wait stopped: {err}"),
        }
    }
}

impl Error for RateLimitError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RateLimitError::Context(err) => Some(err),
            _ => None,
        }
    }
}
