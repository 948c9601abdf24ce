//! [`Stage`]: a stage's name, workers, order and error policy; [`Retry`]:
//! exponential backoff with a cap and jitter.
//!
//! Invariants:
//!
//! * A stage's function is called at most [`Retry::max_attempts`] times per
//!   item; without [`Stage::retry`], once.
//! * The n-th retry waits `min(initial × multiplier^(n-1), max_delay)`, then
//!   jitter takes a uniformly drawn fraction of at most `jitter` off it. The
//!   draws come from a SplitMix64 sequence per stage, seeded by
//!   [`Retry::seed`] (or from the process's random hasher keys), so a seeded
//!   one-worker stage waits exactly the same on every run.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a stage does with an item whose call failed (after its retries, if
/// the stage has any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// The error ends the pipeline: every stage is cancelled (Go's errgroup).
    Stop,
    /// The item is dropped and counted; the stage goes on (Akka's `resume`).
    Skip,
}

/// One stage of a [`Pipeline`](super::Pipeline): its name (for stats and
/// `tracing`), how many calls run at once, whether results keep input order,
/// and what a failed call does.
///
/// A `&'static str` (or a `String`) is a stage of that name with the defaults:
/// one worker (a Go stage: one goroutine), input order kept, stop on the first
/// error.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::prelude::*;
///
/// let fetch = Stage::new("fetch")
///     .workers(8)
///     .unordered()
///     .retry(Retry::exponential(Duration::from_millis(100)).max_attempts(4).jitter(0.5))
///     .skip_errors(); // what is still failing after 4 attempts is skipped and counted
/// let parse: Stage = "parse".into(); // 1 worker, ordered, stop on error
/// # let _ = (fetch, parse);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Stage does nothing until passed to Pipeline::stage"]
pub struct Stage<P = NoRetry> {
    pub(crate) name: Cow<'static, str>,
    pub(crate) workers: usize,
    pub(crate) buffer: Option<usize>,
    pub(crate) ordered: bool,
    pub(crate) on_failure: OnFailure,
    pub(crate) retry: P,
}

impl Stage<NoRetry> {
    /// A stage called `name`: one worker, input order kept, the first error
    /// stops the pipeline.
    ///
    /// ```
    /// let stage = tokio_conc::pipeline::Stage::new("resize");
    /// # let _ = stage;
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Stage {
            name: name.into(),
            workers: 1,
            buffer: None,
            ordered: true,
            on_failure: OnFailure::Stop,
            retry: NoRetry,
        }
    }

    /// Retries a failed call with exponential backoff before the stage's
    /// failure policy ([`skip_errors`](Self::skip_errors) or stop) applies.
    /// The function gets a clone of the item on each attempt, so the item
    /// type must be `Clone`. Attempts, retries and the last error show in the
    /// stage's [`StageStats`](super::StageStats).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// let stage = Stage::new("fetch").retry(Retry::exponential(Duration::from_millis(50)));
    /// # let _ = stage;
    /// ```
    pub fn retry(self, retry: Retry) -> Stage<Retry> {
        Stage {
            name: self.name,
            workers: self.workers,
            buffer: self.buffer,
            ordered: self.ordered,
            on_failure: self.on_failure,
            retry,
        }
    }
}

impl<P> Stage<P> {
    /// At most `workers` calls of the stage's function run at once, each on a
    /// spawned task (the pool operators' `workers`).
    ///
    /// # Panics
    ///
    /// If `workers` is 0.
    ///
    /// ```
    /// let stage = tokio_conc::pipeline::Stage::new("hash").workers(4);
    /// # let _ = stage;
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        assert!(workers > 0, "`workers` must be at least 1, got 0");
        self.workers = workers;
        self
    }

    /// How many items the stage may pull ahead of its workers
    /// ([`Workers::buffer`](crate::pool::Workers::buffer)).
    ///
    /// # Panics
    ///
    /// If `buffer` is 0.
    ///
    /// ```
    /// let stage = tokio_conc::pipeline::Stage::new("hash").buffer(16);
    /// # let _ = stage;
    /// ```
    pub fn buffer(mut self, buffer: usize) -> Self {
        assert!(buffer > 0, "`buffer` must be at least 1, got 0");
        self.buffer = Some(buffer);
        self
    }

    /// Hands results on as they finish
    /// ([`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered))
    /// instead of in input order ([`par_map`](crate::ConcurrentStreamExt::par_map)).
    ///
    /// ```
    /// let stage = tokio_conc::pipeline::Stage::new("hash").workers(4).unordered();
    /// # let _ = stage;
    /// ```
    pub fn unordered(mut self) -> Self {
        self.ordered = false;
        self
    }

    /// An item whose call failed (after its retries) is dropped and counted in
    /// [`errors`](super::StageStats::errors) and
    /// [`skipped`](super::StageStats::skipped); the stage goes on (Akka's
    /// `Supervision.resume`). The default is to stop: the first error cancels
    /// the whole pipeline and is its last item (Go's errgroup).
    ///
    /// ```
    /// let stage = tokio_conc::pipeline::Stage::new("parse").skip_errors();
    /// # let _ = stage;
    /// ```
    pub fn skip_errors(mut self) -> Self {
        self.on_failure = OnFailure::Skip;
        self
    }

    /// The name given to [`Stage::new`].
    ///
    /// ```
    /// assert_eq!(tokio_conc::pipeline::Stage::new("hash").label(), "hash");
    /// ```
    pub fn label(&self) -> &str {
        &self.name
    }
}

impl From<&'static str> for Stage<NoRetry> {
    fn from(name: &'static str) -> Self {
        Stage::new(name)
    }
}

impl From<String> for Stage<NoRetry> {
    fn from(name: String) -> Self {
        Stage::new(name)
    }
}

/// The retry setting of a [`Stage`] that does not retry: each item is tried
/// once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoRetry;

/// Exponential backoff with a cap and jitter, for [`Stage::retry`].
///
/// The n-th retry of an item waits `min(initial × multiplier^(n-1), max_delay)`,
/// less a random fraction of at most [`jitter`](Self::jitter) of it. Waits
/// run on Tokio's clock, so tests on paused time see them exactly.
///
/// Defaults: 3 attempts in all, multiplier 2, cap 10 s, no jitter.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::prelude::*;
///
/// let retry = Retry::exponential(Duration::from_millis(100))
///     .max_attempts(5)
///     .multiplier(3.0)
///     .max_delay(Duration::from_secs(1));
/// let waits: Vec<_> = (1..5).map(|n| retry.delay(n)).collect();
/// assert_eq!(waits, [100, 300, 900, 1000].map(Duration::from_millis));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    max_attempts: u32,
    jitter: f64,
    seed: Option<u64>,
}

impl Retry {
    /// Backoff starting at `initial`, doubling on each retry.
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(10));
    /// assert_eq!(retry.delay(3), Duration::from_millis(40));
    /// ```
    pub fn exponential(initial: Duration) -> Self {
        Retry {
            initial,
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_attempts: 3,
            jitter: 0.0,
            seed: None,
        }
    }

    /// At most `attempts` calls per item, the first one included.
    ///
    /// # Panics
    ///
    /// If `attempts` is 0.
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(10)).max_attempts(5);
    /// # let _ = retry;
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        assert!(attempts > 0, "`attempts` must be at least 1, got 0");
        self.max_attempts = attempts;
        self
    }

    /// How much each wait grows over the one before (default 2).
    ///
    /// # Panics
    ///
    /// If `multiplier` is below 1 or not a finite number.
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(10)).multiplier(1.5);
    /// assert_eq!(retry.delay(2), Duration::from_millis(15));
    /// ```
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        assert!(
            multiplier.is_finite() && multiplier >= 1.0,
            "`multiplier` must be a finite number of at least 1, got {multiplier}"
        );
        self.multiplier = multiplier;
        self
    }

    /// The longest wait between two attempts (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_secs(1))
    ///     .max_delay(Duration::from_secs(5));
    /// assert_eq!(retry.delay(10), Duration::from_secs(5));
    /// ```
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Takes a random fraction of up to `jitter` (0 to 1) off each wait, so
    /// that many clients retrying the same failure spread out (default 0: no
    /// jitter). `1.0` is "full jitter": a wait anywhere from 0 to the backoff.
    ///
    /// # Panics
    ///
    /// If `jitter` is not within 0 to 1.
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(100)).jitter(0.5);
    /// # let _ = retry;
    /// ```
    pub fn jitter(mut self, jitter: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&jitter),
            "`jitter` must be within 0 and 1, got {jitter}"
        );
        self.jitter = jitter;
        self
    }

    /// Seeds the stage's jitter sequence, so that its waits repeat from run to
    /// run (by default each stage draws a fresh seed).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(100))
    ///     .jitter(1.0)
    ///     .seed(7);
    /// # let _ = retry;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The wait before retry number `retry` (1 for the first retry), before
    /// jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(10));
    /// assert_eq!(retry.delay(1), Duration::from_millis(10));
    /// assert_eq!(retry.delay(2), Duration::from_millis(20));
    /// ```
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.powi(exponent);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The number of attempts set by [`max_attempts`](Self::max_attempts).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = tokio_conc::pipeline::Retry::exponential(Duration::from_millis(10));
    /// assert_eq!(retry.attempts(), 3);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoRetry {}
    impl Sealed for super::Retry {}
}

/// How a stage tries an item: [`NoRetry`] (once) or [`Retry`] (again after a
/// failure, with backoff, on a clone of the item). Sealed: implemented by
/// those two only.
#[diagnostic::on_unimplemented(
    message = "a retrying stage calls its function again with the same item, so `{T}` must be `Clone`",
    label = "this stage retries, and its items are not `Clone`"
)]
pub trait Attempts<T>: sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    fn limit(&self) -> u32;
    #[doc(hidden)]
    fn again(&self, item: &T) -> T;
    #[doc(hidden)]
    fn backoff(&self) -> Option<&Retry>;
}

impl<T> Attempts<T> for NoRetry {
    fn limit(&self) -> u32 {
        1
    }
    fn again(&self, _: &T) -> T {
        unreachable!("a stage without retry never tries an item twice")
    }
    fn backoff(&self) -> Option<&Retry> {
        None
    }
}

impl<T: Clone> Attempts<T> for Retry {
    fn limit(&self) -> u32 {
        self.max_attempts
    }
    fn again(&self, item: &T) -> T {
        item.clone()
    }
    fn backoff(&self) -> Option<&Retry> {
        Some(self)
    }
}

/// SplitMix64 over an atomic counter: a small, lock-free, seedable source of
/// jitter shared by a stage's workers.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            // The standard library's per-process random keys: no dependency.
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(GOLDEN_GAMMA);
            hasher.finish()
        });
        Jitter {
            state: AtomicU64::new(seed),
        }
    }

    /// The next draw, uniform in `[0, 1)`.
    pub(crate) fn next_unit(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits, as a fraction.
        (z >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// The wait before retry number `retry`, jitter applied.
    pub(crate) fn wait(&self, retry: &Retry, n: u32) -> Duration {
        let base = retry.delay(n);
        if retry.jitter == 0.0 {
            return base;
        }
        base.mul_f64(1.0 - retry.jitter * self.next_unit())
    }
}

pub(crate) fn jitter_for<T, P: Attempts<T>>(policy: &P) -> Jitter {
    Jitter::new(policy.backoff().and_then(|r| r.seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_seeded() {
        let a = Jitter::new(Some(1));
        let b = Jitter::new(Some(1));
        let draws: Vec<f64> = (0..10_000).map(|_| a.next_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let again: Vec<f64> = (0..10_000).map(|_| b.next_unit()).collect();
        assert_eq!(draws, again, "same seed, same sequence");
    }

    #[test]
    fn waits_grow_then_cap_and_jitter_stays_below_the_backoff() {
        let retry = Retry::exponential(Duration::from_millis(10))
            .max_delay(Duration::from_millis(50))
            .jitter(0.5);
        let jitter = Jitter::new(Some(3));
        for n in 1..20 {
            let wait = jitter.wait(&retry, n);
            let base = retry.delay(n);
            assert!(wait <= base && wait >= base / 2, "{wait:?} vs {base:?}");
        }
        assert_eq!(retry.delay(u32::MAX), Duration::from_millis(50));
    }
}
