//! [`TokioClock`]: governor's clock on Tokio's time, so rate limits follow
//! `tokio::time::pause` and `advance` like every Tokio timer; and
//! [`ScheduleClock`], the same clock as this crate's limiters read it, which a
//! waiter can read as of the instant it was due.

use std::cell::Cell;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, ReasonablyRealtime, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A [`governor::clock::Clock`] that reads [`tokio::time::Instant::now`].
///
/// Every limiter in this module reads this time (the keyed one through this
/// clock, charging a waiter that slept as of the instant it was due; see
/// [`Rate`](super::Rate#keeping-the-pace-on-the-real-clock)). It is public so
/// that code building its own governor limiter (say, with another state
/// store) gets the same time: on paused time, rate limits are exact and take
/// no real time.
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

thread_local! {
    /// The reading [`ScheduleClock`] gives on this thread while a waiter's
    /// check runs (see [`checked_as_of`]).
    static PINNED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// [`TokioClock`], except that a waiter that slept until its turn is checked
/// as of the instant it was due rather than the instant it woke up.
///
/// Timers fire late (Tokio's tick is a millisecond, and a busy runtime adds
/// more). Checked at the wake-up instant, GCRA would schedule the next item
/// from there, so every wake-up's lateness would be lost for good. Read as of
/// the due instant, the schedule keeps its pace (as a reservation does in
/// Go's `rate.Limiter.Wait`).
///
/// The pinned reading lives in a thread-local set for the duration of one
/// synchronous check, so it only ever applies to the waiter that set it:
/// other callers, on this thread or any other, read the real time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScheduleClock;

impl Clock for ScheduleClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        match PINNED.with(Cell::get) {
            Some(pinned) => TokioInstant(pinned),
            None => TokioClock.now(),
        }
    }
}

impl ReasonablyRealtime for ScheduleClock {}

/// Runs `check` with [`ScheduleClock`] reading `due`, or the real time if
/// `due` is `None` or still ahead (a check is never made as of the future).
///
/// GCRA's bound holds for any order of check instants, so checking as of a
/// past instant can never let more pass in a window than the quota allows; it
/// only places this one cell at the instant it was due.
#[inline(always)]
pub(crate) fn checked_as_of<R>(due: Option<Instant>, check: impl FnOnce() -> R) -> R {
    match due {
        // The never-waiting path: inlined, so the check's result stays in
        // registers.
        None => check(),
        Some(due) => pinned_at(due, check),
    }
}

#[cold]
fn pinned_at<R>(due: Instant, check: impl FnOnce() -> R) -> R {
    /// Restores the previous reading even if `check` unwinds.
    struct Unpin(Option<Instant>);
    impl Drop for Unpin {
        fn drop(&mut self) {
            PINNED.with(|pinned| pinned.set(self.0));
        }
    }
    let at = due.min(Instant::now());
    let _unpin = Unpin(PINNED.with(|pinned| pinned.replace(Some(at))));
    check()
}

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

    #[tokio::test(start_paused = true)]
    async fn a_schedule_reading_is_pinned_only_inside_the_check_and_never_ahead() {
        let due = Instant::now();
        tokio::time::advance(Duration::from_millis(7)).await;
        let inside = checked_as_of(Some(due), || ScheduleClock.now());
        assert_eq!(inside.instant(), due);
        assert_eq!(ScheduleClock.now().instant(), Instant::now());

        let ahead = Instant::now() + Duration::from_secs(1);
        let inside = checked_as_of(Some(ahead), || ScheduleClock.now());
        assert_eq!(
            inside.instant(),
            Instant::now(),
            "never read as of the future"
        );

        let other_thread = checked_as_of(Some(due), || {
            std::thread::scope(|s| s.spawn(|| ScheduleClock.now()).join().unwrap())
        });
        assert_ne!(
            other_thread.instant(),
            due,
            "another thread reads the real time"
        );
    }
}
