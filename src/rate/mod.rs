//! Rate limiting on [`governor`]'s GCRA, on Tokio's clock: Go's `time.Tick`
//! loop and its bursty limiter, as stream operators and as a plain limiter.
//!
//! * [`Rate`] says how fast: [`Rate::per_second`], [`Rate::per_minute`],
//!   [`Rate::every`], and [`Rate::burst`] for how many may pass at once.
//! * [`RateLimiter`] is the plain limiter for services (`until_ready().await`,
//!   `check()`), cheap to clone and share between tasks.
//! * [`KeyedRateLimiter`] gives every key (a user, a host) its own quota.
//! * The stream operators on [`ConcurrentStreamExt`](crate::ConcurrentStreamExt)
//!   (`rate_limit`, `rate_limit_shared`, `rate_limit_weighted`, `rate_limit_by`)
//!   return a [`RateLimit`] stream whose policy for what is over the quota is
//!   to delay it (the default), to drop it and count it
//!   ([`RateLimit::drop_over_quota`]), or to hand it back as an error
//!   ([`RateLimit::fail_over_quota`]).
//!
//! Time comes from [`TokioClock`], so everything follows
//! `tokio::time::pause`: tests on paused time are exact and take no real time.
//!
//! ```
//! use std::time::Duration;
//! use futures::StreamExt;
//! use tokio::time::Instant;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let start = Instant::now();
//! let at: Vec<Duration> = futures::stream::iter(0..5)
//!     .rate_limit(Rate::per_second(10).burst(3))
//!     .map(|_| start.elapsed())
//!     .collect()
//!     .await;
//! // Three at once, then one every 100 ms.
//! let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
//! assert_eq!(ms, [0, 0, 0, 100, 200]);
//! # }
//! ```

mod clock;
mod error;
mod gcra;
mod keyed;
mod limiter;
mod stream;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

pub use clock::{TokioClock, TokioInstant};
pub use error::RateLimitError;
pub use keyed::KeyedRateLimiter;
pub use limiter::RateLimiter;
pub use stream::{
    Delay, Discard, DropCounter, Fail, Gate, Keyed, RateLimit, RateLimited, Weighted,
};

pub(crate) use stream::{keyed, rate_limit, weighted};

/// How fast items may pass: a steady interval between them, and a burst that
/// may pass at once after a quiet spell.
///
/// Without [`burst`](Self::burst) the flow is smooth: one item per interval,
/// like Go's `time.Tick`. With `.burst(b)`, up to `b` items pass at once and
/// the allowance refills at the same steady rate, like Go's bursty limiter. The
/// bound behind it (GCRA): in any window of length `T`, at most
/// `b + T / interval` items are charged to the limiter (below: how that meets
/// timers that fire late).
///
/// # Keeping the pace on the real clock
///
/// Tokio's timers fire on millisecond ticks, a little after they are due,
/// and a busy runtime adds more. So an item that has to wait is charged for
/// the instant it is due, not the instant its task wakes up: a
/// [`RateLimiter`] (and every stream on one) reserves that instant when the
/// wait begins, as Go's `rate.Limiter.Wait` does, so callers that come later
/// are judged after it and cannot take its place; a [`KeyedRateLimiter`]
/// charges its waiter as of that instant when it wakes. Either way a late
/// wake-up does not push back the items behind it, lateness does not pile
/// up, and the long-run rate is the configured one, even for a smooth 1000
/// per second.
///
/// The GCRA bound holds exactly on the instants items are charged as of, so
/// the count since the limiter's first use never runs ahead of the rate. The
/// instants items really come out trail their charge by their wake-up's
/// lateness, so a late item may come out just before the next one: in a
/// window of real instants, each waiting caller (a stream, a task in
/// `until_ready`) can add one item to the bound, no more. That one item is
/// all the catching up there is: of a wake-up (or a stall of the runtime)
/// later than a whole interval, the excess is lost; a burst of a few
/// intervals absorbs that too. On paused time (tests) nothing wakes late and
/// the bound holds on the very instants items come out.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::rate::Rate;
///
/// let rate = Rate::per_second(200).burst(20);
/// assert_eq!(rate.interval(), Duration::from_millis(5));
/// assert_eq!(rate.burst_size(), 20);
/// assert_eq!(Rate::every(Duration::from_millis(200)).burst_size(), 1);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    interval: Duration,
    burst: NonZeroU32,
}

/// A zero rate, burst or interval: what the `try_` constructors of [`Rate`]
/// return instead of panicking.
///
/// ```
/// use tokio_conc::rate::Rate;
///
/// let err = Rate::try_per_second(0).unwrap_err();
/// assert_eq!(err.to_string(), "`Rate::per_second(n)`: `n` must be at least 1, got 0");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidRate {
    message: &'static str,
}

impl fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for InvalidRate {}

const ZERO_PER_SECOND: InvalidRate = InvalidRate {
    message: "`Rate::per_second(n)`: `n` must be at least 1, got 0",
};
const ZERO_PER_MINUTE: InvalidRate = InvalidRate {
    message: "`Rate::per_minute(n)`: `n` must be at least 1, got 0",
};
const ZERO_INTERVAL: InvalidRate = InvalidRate {
    message: "`Rate::every(interval)`: `interval` must be longer than zero",
};
const ZERO_BURST: InvalidRate = InvalidRate {
    message: "`Rate::burst(b)`: `b` must be at least 1, got 0",
};

fn or_panic(rate: Result<Rate, InvalidRate>) -> Rate {
    rate.unwrap_or_else(|err| panic!("{err}"))
}

impl Rate {
    /// `n` items per second, evenly spaced (burst 1).
    ///
    /// # Panics
    ///
    /// If `n` is 0; [`try_per_second`](Self::try_per_second) returns an error
    /// instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::Rate;
    ///
    /// assert_eq!(Rate::per_second(4).interval(), Duration::from_millis(250));
    /// ```
    ///
    /// ```should_panic
    /// tokio_conc::rate::Rate::per_second(0); // panics: `n` must be at least 1
    /// ```
    pub fn per_second(n: u32) -> Rate {
        or_panic(Rate::try_per_second(n))
    }

    /// `n` items per minute, evenly spaced (burst 1).
    ///
    /// # Panics
    ///
    /// If `n` is 0; [`try_per_minute`](Self::try_per_minute) returns an error
    /// instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::Rate;
    ///
    /// assert_eq!(Rate::per_minute(30).interval(), Duration::from_secs(2));
    /// ```
    pub fn per_minute(n: u32) -> Rate {
        or_panic(Rate::try_per_minute(n))
    }

    /// One item every `interval` (burst 1): Go's `time.Tick(interval)`.
    ///
    /// # Panics
    ///
    /// If `interval` is zero; [`try_every`](Self::try_every) returns an error
    /// instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::Rate;
    ///
    /// let tick = Rate::every(Duration::from_millis(200));
    /// assert_eq!(tick.interval(), Duration::from_millis(200));
    /// ```
    pub fn every(interval: Duration) -> Rate {
        or_panic(Rate::try_every(interval))
    }

    /// Lets up to `b` items pass at once; the allowance refills one item per
    /// interval. `burst(1)` is the smooth default.
    ///
    /// # Panics
    ///
    /// If `b` is 0; [`try_burst`](Self::try_burst) returns an error instead.
    ///
    /// ```
    /// use tokio_conc::rate::Rate;
    ///
    /// assert_eq!(Rate::per_second(10).burst(3).burst_size(), 3);
    /// ```
    ///
    /// ```should_panic
    /// tokio_conc::rate::Rate::per_second(10).burst(0); // panics: `b` must be at least 1
    /// ```
    pub fn burst(self, b: u32) -> Rate {
        or_panic(self.try_burst(b))
    }

    /// No limit at all (Go's `rate.Inf`): every permit passes at once, any
    /// cost, whatever the burst — for switching a limit off at run time
    /// ([`RateLimiter::set_rate`]) or configuring "no limit" without a
    /// second code path. Its [`interval`](Self::interval) is zero.
    ///
    /// ```
    /// use tokio_conc::rate::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::unlimited());
    /// for _ in 0..1000 {
    ///     limiter.check_n(50).unwrap();
    /// }
    /// assert!(Rate::unlimited().is_unlimited());
    /// # }
    /// ```
    pub const fn unlimited() -> Rate {
        Rate {
            interval: Duration::ZERO,
            burst: NonZeroU32::MIN,
        }
    }

    /// Whether this is [`Rate::unlimited`].
    ///
    /// ```
    /// assert!(!tokio_conc::rate::Rate::per_second(1).is_unlimited());
    /// ```
    pub fn is_unlimited(&self) -> bool {
        self.interval.is_zero()
    }

    /// [`per_second`](Self::per_second), or an error for a zero `n`.
    ///
    /// ```
    /// assert!(tokio_conc::rate::Rate::try_per_second(0).is_err());
    /// ```
    pub fn try_per_second(n: u32) -> Result<Rate, InvalidRate> {
        let n = NonZeroU32::new(n).ok_or(ZERO_PER_SECOND)?;
        Ok(Rate::from(
            Quota::per_second(n).allow_burst(NonZeroU32::MIN),
        ))
    }

    /// [`per_minute`](Self::per_minute), or an error for a zero `n`.
    ///
    /// ```
    /// assert!(tokio_conc::rate::Rate::try_per_minute(0).is_err());
    /// ```
    pub fn try_per_minute(n: u32) -> Result<Rate, InvalidRate> {
        let n = NonZeroU32::new(n).ok_or(ZERO_PER_MINUTE)?;
        Ok(Rate::from(
            Quota::per_minute(n).allow_burst(NonZeroU32::MIN),
        ))
    }

    /// [`every`](Self::every), or an error for a zero `interval`.
    ///
    /// ```
    /// assert!(tokio_conc::rate::Rate::try_every(std::time::Duration::ZERO).is_err());
    /// ```
    pub fn try_every(interval: Duration) -> Result<Rate, InvalidRate> {
        let quota = Quota::with_period(interval).ok_or(ZERO_INTERVAL)?;
        Ok(Rate::from(quota))
    }

    /// [`burst`](Self::burst), or an error for a zero `b`.
    ///
    /// ```
    /// assert!(tokio_conc::rate::Rate::per_second(1).try_burst(0).is_err());
    /// ```
    pub fn try_burst(self, b: u32) -> Result<Rate, InvalidRate> {
        let burst = NonZeroU32::new(b).ok_or(ZERO_BURST)?;
        Ok(Rate { burst, ..self })
    }

    /// The steady spacing between items once the burst is spent (zero for
    /// [`Rate::unlimited`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(tokio_conc::rate::Rate::per_second(2).interval(), Duration::from_millis(500));
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many items may pass at once.
    ///
    /// ```
    /// assert_eq!(tokio_conc::rate::Rate::per_second(2).burst_size(), 1);
    /// ```
    pub fn burst_size(&self) -> u32 {
        self.burst.get()
    }

    /// How long a limiter must stay quiet to refill its whole burst.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rate = tokio_conc::rate::Rate::per_second(10).burst(5);
    /// assert_eq!(rate.refill_time(), Duration::from_millis(500));
    /// ```
    pub fn refill_time(&self) -> Duration {
        self.interval.saturating_mul(self.burst.get())
    }

    /// The rate as a governor quota. Governor has no unlimited quota: the
    /// unlimited rate becomes its fastest (a cell per nanosecond, the
    /// largest burst).
    pub(crate) fn quota(&self) -> Quota {
        match Quota::with_period(self.interval) {
            Some(quota) => quota.allow_burst(self.burst),
            None => Quota::with_period(Duration::from_nanos(1))
                .expect("one nanosecond is not zero")
                .allow_burst(NonZeroU32::MAX),
        }
    }
}

/// The same rate as a [`governor::Quota`], with its burst size.
///
/// ```
/// use std::num::NonZeroU32;
/// use tokio_conc::rate::Rate;
///
/// let quota = governor::Quota::per_second(NonZeroU32::new(50).unwrap());
/// let rate = Rate::from(quota);
/// assert_eq!(rate.burst_size(), 50);
/// assert_eq!(governor::Quota::from(rate), quota);
/// ```
impl From<Quota> for Rate {
    fn from(quota: Quota) -> Self {
        Rate {
            // Above a billion per second the interval rounds down to zero;
            // governor counts that as one nanosecond, and so does `Rate`.
            interval: quota.replenish_interval().max(Duration::from_nanos(1)),
            burst: quota.burst_size(),
        }
    }
}

/// The [`governor::Quota`] for this rate, for code that builds its own
/// governor limiter (see [`TokioClock`]). Governor has no unlimited quota:
/// [`Rate::unlimited`] becomes its fastest, one cell per nanosecond with the
/// largest burst.
impl From<Rate> for Quota {
    fn from(rate: Rate) -> Self {
        rate.quota()
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            return f
                .debug_struct("Rate")
                .field("unlimited", &true)
                .field("burst", &self.burst.get())
                .finish();
        }
        f.debug_struct("Rate")
            .field("interval", &self.interval)
            .field("burst", &self.burst.get())
            .finish()
    }
}
