//! Live per-stage counters, the [`PipelineStats`] handle that reads them, and
//! the [`PipelineReport`] it returns.
//!
//! Invariants (what the accounting guarantees):
//!
//! * Every item a stage takes from upstream is counted in `items_in` once and
//!   ends in exactly one of `items_out` (handed to the next stage or the
//!   consumer), `errors` (failed after its retries; `skipped` counts the
//!   failures that were skipped, a subset of `errors`) or `dropped` (taken,
//!   then abandoned because the pipeline stopped). Until it ends it is
//!   `in_flight`. So `items_in == items_out + errors + dropped + in_flight`,
//!   with `in_flight == 0` once the pipeline has ended.
//! * A snapshot reads `items_in` last, so a snapshot taken while the pipeline
//!   runs never shows more items ended than taken in.
//! * Durations are read from Tokio's clock, so they are exact on paused time.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::time::Instant;

use crate::context::ContextError;

/// One stage's live counters, shared by its workers, its input and output
/// adapters, and every [`PipelineStats`] handle.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) name: Cow<'static, str>,
    pub(crate) workers: usize,
    pub(crate) items_in: AtomicU64,
    pub(crate) items_out: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) blocked_ns: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// Woken when an item is dropped unsettled: the pipeline, once its stages
    /// have ended, waits for every item they held to be accounted for.
    pub(crate) settled: Arc<AtomicWaker>,
}

impl Counters {
    fn new(name: Cow<'static, str>, workers: usize, settled: Arc<AtomicWaker>) -> Self {
        Counters {
            settled,
            name,
            workers,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            running: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn add_time(counter: &AtomicU64, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, SeqCst);
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Whether every item taken in has ended and no call is running.
    fn is_settled(&self) -> bool {
        let ended =
            self.items_out.load(SeqCst) + self.errors.load(SeqCst) + self.dropped.load(SeqCst);
        self.running.load(SeqCst) == 0 && ended == self.items_in.load(SeqCst)
    }

    fn snapshot(&self) -> StageStats {
        // `items_in` last: every item counted as ended was counted in before.
        let items_out = self.items_out.load(SeqCst);
        let errors = self.errors.load(SeqCst);
        let skipped = self.skipped.load(SeqCst);
        let dropped = self.dropped.load(SeqCst);
        let running = self.running.load(SeqCst);
        let attempts = self.attempts.load(SeqCst);
        let retries = self.retries.load(SeqCst);
        let busy = Duration::from_nanos(self.busy_ns.load(SeqCst));
        let blocked = Duration::from_nanos(self.blocked_ns.load(SeqCst));
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let items_in = self.items_in.load(SeqCst);
        StageStats {
            name: self.name.clone(),
            workers: self.workers,
            items_in,
            items_out,
            errors,
            skipped,
            dropped,
            in_flight: items_in.saturating_sub(items_out + errors + dropped),
            running,
            attempts,
            retries,
            busy,
            blocked,
            last_error,
        }
    }
}

/// A snapshot of one stage's counters: what [`PipelineStats::stages`] and a
/// [`PipelineReport`] hold.
///
/// Every item the stage took in is in exactly one of `items_out`, `errors`,
/// `dropped` or `in_flight`:
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::pipeline::BoxError;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let pipeline = Pipeline::new(futures::stream::iter(1..=10_u32))
///     .stage(Stage::new("odd").workers(2).skip_errors(), |n| async move {
///         if n % 2 == 1 { Ok(n) } else { Err(format!("{n} is even").into()) }
///     });
/// let stats = pipeline.stats();
/// let kept: Vec<Result<u32, BoxError>> = pipeline.collect().await;
/// assert_eq!(kept.len(), 5);
/// let odd = stats.stage("odd").unwrap();
/// assert_eq!((odd.items_in, odd.items_out, odd.errors, odd.skipped), (10, 5, 5, 5));
/// assert_eq!(odd.items_in, odd.items_out + odd.errors + odd.dropped + odd.in_flight);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageStats {
    /// The stage's name.
    pub name: Cow<'static, str>,
    /// How many calls of the stage's function may run at once.
    pub workers: usize,
    /// Items taken from upstream.
    pub items_in: u64,
    /// Items handed downstream (to the next stage, or to the consumer).
    pub items_out: u64,
    /// Items whose call failed for good (after their retries). Includes
    /// `skipped`.
    pub errors: u64,
    /// Failed items the stage skipped ([`Stage::skip_errors`](super::Stage::skip_errors)):
    /// a subset of `errors`.
    pub skipped: u64,
    /// Items taken in, then abandoned because the pipeline stopped (an error
    /// elsewhere, a cancelled context, the consumer dropping the pipeline).
    /// A pipeline that ends (yields its last item) has accounted for all of
    /// them; one that is dropped early counts them as its aborted workers
    /// end, a moment later.
    pub dropped: u64,
    /// Items taken in and not yet ended: queued, running, or done and waiting
    /// for the next stage.
    pub in_flight: u64,
    /// Calls running right now.
    pub running: u64,
    /// Calls of the stage's function, retries included.
    pub attempts: u64,
    /// Calls that were retries of a failed call.
    pub retries: u64,
    /// Time spent inside the stage's function, summed over its workers (so up
    /// to `workers` times the wall time). Backoff sleeps are not included.
    pub busy: Duration,
    /// Wall time during which the stage had a finished item ready and the next
    /// stage (or the consumer) was not asking for one: how long this stage was
    /// held up by what comes after it.
    pub blocked: Duration,
    /// The last error a call returned (retried, skipped or final), as
    /// `Display` wrote it.
    pub last_error: Option<String>,
}

/// How a pipeline run ended (or that it has not).
///
/// ```
/// use tokio_conc::pipeline::Outcome;
///
/// assert!(Outcome::Completed.is_completed());
/// assert!(!Outcome::Running.is_completed());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Not started, or still running.
    Running,
    /// The source ended and every item went through (or was skipped).
    Completed,
    /// A stage with the stop policy failed: its error ended the pipeline.
    Failed {
        /// The stage that failed.
        stage: Cow<'static, str>,
        /// The error, as `Display` wrote it.
        error: String,
    },
    /// The pipeline's context was cancelled, or its deadline passed.
    Stopped(ContextError),
    /// A stage's function panicked; the panic was resumed in the consumer.
    Panicked,
    /// The consumer dropped the pipeline before its end.
    Abandoned,
}

impl Outcome {
    /// Whether the run went through to its end without a failure or a stop.
    ///
    /// ```
    /// assert!(tokio_conc::pipeline::Outcome::Completed.is_completed());
    /// ```
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Running => f.write_str("running"),
            Outcome::Completed => f.write_str("completed"),
            Outcome::Failed { stage, error } => write!(f, "failed in stage {stage}: {error}"),
            Outcome::Stopped(why) => write!(f, "stopped: {why}"),
            Outcome::Panicked => f.write_str("panicked"),
            Outcome::Abandoned => f.write_str("abandoned by its consumer"),
        }
    }
}

/// What every handle on one pipeline shares.
#[derive(Debug)]
struct Registry {
    stages: Mutex<Vec<Arc<Counters>>>,
    clock: Mutex<Clock>,
    settled: Arc<AtomicWaker>,
}

#[derive(Debug)]
struct Clock {
    started: Option<Instant>,
    ended: Option<Instant>,
    outcome: Outcome,
}

/// A cheap, cloneable handle on a [`Pipeline`](super::Pipeline)'s live
/// statistics: read it from any task while the pipeline runs, and after it has
/// ended for the final [`report`](Self::report).
///
/// ```
/// use std::time::Duration;
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let pipeline = Pipeline::new(futures::stream::iter(1..=100_u64))
///     .stage(Stage::new("square").workers(4), |n| async move { Ok(n * n) });
/// let stats = pipeline.stats();
/// let watcher = tokio::spawn({
///     let stats = stats.clone();
///     async move { stats.stage("square").unwrap().items_in } // live, from another task
/// });
/// let squares: Vec<Result<u64, ContextError>> = pipeline.collect().await;
/// assert_eq!(squares.len(), 100);
/// assert!(watcher.await.unwrap() <= 100);
/// let report = stats.report();
/// assert!(report.outcome.is_completed());
/// assert_eq!(report.stages[0].items_out, 100);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PipelineStats {
    registry: Arc<Registry>,
}

impl PipelineStats {
    pub(crate) fn new() -> Self {
        PipelineStats {
            registry: Arc::new(Registry {
                stages: Mutex::new(Vec::new()),
                clock: Mutex::new(Clock {
                    started: None,
                    ended: None,
                    outcome: Outcome::Running,
                }),
                settled: Arc::new(AtomicWaker::new()),
            }),
        }
    }

    /// Registers a new stage's counters, in pipeline order.
    pub(crate) fn add_stage(&self, name: Cow<'static, str>, workers: usize) -> Arc<Counters> {
        let counters = Arc::new(Counters::new(name, workers, self.registry.settled.clone()));
        self.lock_stages().push(counters.clone());
        counters
    }

    /// Ready once every item the stages took in is accounted for and no call
    /// runs: after the stages' streams have ended, their aborted workers may
    /// still be dropping what they held.
    pub(crate) fn poll_settled(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let settled = || self.lock_stages().iter().all(|c| c.is_settled());
        if settled() {
            return std::task::Poll::Ready(());
        }
        self.registry.settled.register(cx.waker());
        if settled() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    fn lock_stages(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Counters>>> {
        self.registry
            .stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.registry
            .clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mark_started(&self) {
        let mut clock = self.lock_clock();
        clock.started.get_or_insert_with(Instant::now);
    }

    /// Records how the run ended; the first outcome recorded wins.
    pub(crate) fn mark_ended(&self, outcome: Outcome) {
        let mut clock = self.lock_clock();
        if clock.outcome == Outcome::Running {
            clock.outcome = outcome;
            clock.ended = Some(Instant::now());
        }
    }

    /// A snapshot of every stage, in pipeline order.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pipeline = Pipeline::new(futures::stream::iter(["a"]))
    ///     .stage("upper", |s: &str| async move { Ok::<_, ContextError>(s.to_uppercase()) })
    ///     .stage("len", |s: String| async move { Ok(s.len()) });
    /// let names: Vec<_> = pipeline.stats().stages().into_iter().map(|s| s.name).collect();
    /// assert_eq!(names, ["upper", "len"]);
    /// # }
    /// ```
    pub fn stages(&self) -> Vec<StageStats> {
        self.lock_stages().iter().map(|c| c.snapshot()).collect()
    }

    /// A snapshot of the first stage called `name`, if there is one.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let pipeline = Pipeline::new(futures::stream::iter([1]))
    ///     .stage("double", |n: i32| async move { Ok::<_, ContextError>(n * 2) });
    /// assert_eq!(pipeline.stats().stage("double").unwrap().items_in, 0);
    /// assert!(pipeline.stats().stage("triple").is_none());
    /// ```
    pub fn stage(&self, name: &str) -> Option<StageStats> {
        self.lock_stages()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.snapshot())
    }

    /// Every stage's counters, how long the run has taken (so far, if it is
    /// still running) and how it ended.
    ///
    /// ```
    /// use futures::TryStreamExt;
    /// use tokio_conc::pipeline::Outcome;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pipeline = Pipeline::new(futures::stream::iter(1..=3))
    ///     .stage("inc", |n: i32| async move { Ok::<_, ContextError>(n + 1) });
    /// let stats = pipeline.stats();
    /// assert_eq!(stats.report().outcome, Outcome::Running);
    /// let out: Vec<i32> = pipeline.try_collect().await.unwrap();
    /// assert_eq!(out, [2, 3, 4]);
    /// let report = stats.report();
    /// assert_eq!(report.outcome, Outcome::Completed);
    /// println!("{report}"); // a table, one row per stage
    /// # }
    /// ```
    pub fn report(&self) -> PipelineReport {
        let stages = self.stages();
        let clock = self.lock_clock();
        let elapsed = match (clock.started, clock.ended) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            _ => Duration::ZERO,
        };
        PipelineReport {
            stages,
            elapsed,
            outcome: clock.outcome.clone(),
        }
    }
}

/// Every stage's counters, the run's wall time and its [`Outcome`]: what
/// [`PipelineStats::report`] and [`Pipeline::run`](super::Pipeline::run)
/// return. Its `Display` is a table, one row per stage.
///
/// ```
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = Pipeline::new(futures::stream::iter(1..=3))
///     .stage("check", |n: i32| async move { Ok::<_, ContextError>(n) })
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(report.stages[0].items_out, 3);
/// assert!(report.to_string().contains("check"));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// One entry per stage, in pipeline order.
    pub stages: Vec<StageStats>,
    /// From the first poll to the end (or to now, while running).
    pub elapsed: Duration,
    /// How the run ended.
    pub outcome: Outcome,
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} after {:.3} s",
            self.outcome,
            self.elapsed.as_secs_f64()
        )?;
        let width = self
            .stages
            .iter()
            .map(|s| s.name.len())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "{:<width$} {:>7} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9} {:>9}",
            "stage",
            "workers",
            "in",
            "out",
            "errors",
            "skipped",
            "dropped",
            "in flight",
            "retries",
            "busy s",
            "blocked s",
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "{:<width$} {:>7} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9.3} {:>9.3}",
                s.name,
                s.workers,
                s.items_in,
                s.items_out,
                s.errors,
                s.skipped,
                s.dropped,
                s.in_flight,
                s.retries,
                s.busy.as_secs_f64(),
                s.blocked.as_secs_f64(),
            )?;
            if let Some(error) = &s.last_error {
                writeln!(f, "{:<width$}   last error: {error}", "")?;
            }
        }
        Ok(())
    }
}
