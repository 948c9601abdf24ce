//! [`TokioClock`]: governor's clock on Tokio's time, so rate limits follow
//! `tokio::time::pause` and `advance` like every Tokio timer.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, ReasonablyRealtime, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A [`governor::clock::Clock`] that reads [`tokio::time::Instant::now`].
///
/// Every limiter in this module runs on it. It is public so that code building
/// its own governor limiter (say, with another state store) gets the same
/// behaviour: on paused time, rate limits are exact and take no real time.
///
/// Outside a runtime with a paused clock it is the ordinary monotonic clock.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use governor::{Quota, RateLimiter};
/// use tokio_conc::rate::TokioClock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let quota = Quota::per_second(NonZeroU32::new(1).unwrap());
/// let limiter = RateLimiter::direct_with_clock(quota, TokioClock);
/// assert!(limiter.check().is_ok());
/// assert!(limiter.check().is_err());
/// tokio::time::advance(Duration::from_secs(1)).await;
/// assert!(limiter.check().is_ok());
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokioClock;

/// A reading of [`TokioClock`]: a [`tokio::time::Instant`] that governor can
/// compute with. (Governor's traits and Tokio's `Instant` both live in other
/// crates, so the clock needs this small wrapper of its own.)
///
/// ```
/// use governor::clock::Clock;
/// use tokio_conc::rate::{TokioClock, TokioInstant};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let now: TokioInstant = TokioClock.now();
/// let instant: tokio::time::Instant = now.into();
/// assert!(instant <= tokio::time::Instant::now());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(Instant);

impl TokioInstant {
    /// The Tokio instant this reading stands for.
    ///
    /// ```
    /// use governor::clock::Clock;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let now = tokio_conc::rate::TokioClock.now();
    /// let _: tokio::time::Instant = now.instant();
    /// # }
    /// ```
    pub fn instant(self) -> Instant {
        self.0
    }
}

impl From<Instant> for TokioInstant {
    fn from(instant: Instant) -> Self {
        TokioInstant(instant)
    }
}

impl From<TokioInstant> for Instant {
    fn from(instant: TokioInstant) -> Self {
        instant.0
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, nanos: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from(nanos))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl ReasonablyRealtime for TokioClock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time_exactly() {
        let before = TokioClock.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let after = TokioClock.now();
        assert_eq!(
            after.duration_since(before),
            Nanos::from(Duration::from_millis(1500))
        );
        assert_eq!(before.duration_since(after), Nanos::from(Duration::ZERO));
        assert_eq!(before + Nanos::from(Duration::from_millis(1500)), after);
        assert_eq!(
            Reference::saturating_sub(&after, Duration::from_millis(1500).into()),
            before
        );
    }
}
