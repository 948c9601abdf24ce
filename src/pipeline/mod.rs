//! [`Pipeline`]: named stages over the pool operators, with live per-stage
//! statistics and an error policy per stage.
//!
//! A plain chain of operators is still the simplest pipeline, and the right
//! one when nobody needs to watch it:
//!
//! ```
//! # use futures::StreamExt;
//! # use tokio_conc::prelude::*;
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let lengths: Vec<usize> = futures::stream::iter(["a", "bb", "ccc"])
//!     .par_map(4, |s| async move { s.to_uppercase() })
//!     .par_map_unordered(2, |s| async move { s.len() })
//!     .collect()
//!     .await;
//! # assert_eq!(lengths.len(), 3);
//! # }
//! ```
//!
//! A `Pipeline` is the same chain with names, counters and policies. Each
//! [`stage`](Pipeline::stage) runs its function on a pool
//! ([`par_map`](crate::ConcurrentStreamExt::par_map), or
//! [`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered) for an
//! [`unordered`](Stage::unordered) stage); the function returns `Result`, and
//! the stage's policy says what a failure does:
//!
//! * **stop** (the default): the first error cancels every stage — upstream
//!   and downstream — and is the pipeline's last item (Go's errgroup);
//! * **skip** ([`Stage::skip_errors`]): the item is dropped and counted, the
//!   stage goes on (Akka's `Supervision.resume`);
//! * **retry** ([`Stage::retry`]): the call is tried again after an
//!   exponential backoff with a cap and jitter ([`Retry`]); an item still
//!   failing after its last attempt then stops or is skipped.
//!
//! ```
//! use std::time::Duration;
//! use futures::TryStreamExt;
//! use tokio_conc::pipeline::BoxError;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), BoxError> {
//! let pipeline: Pipeline<u64, BoxError> = Pipeline::new(futures::stream::iter(["1", "2", "x", "4"]))
//!     .stage(Stage::new("parse").skip_errors(), |s| async move { Ok(s.parse::<u64>()?) })
//!     .stage(Stage::new("square").workers(4).unordered(), |n| async move { Ok(n * n) })
//!     .stage(
//!         Stage::new("store").retry(Retry::exponential(Duration::from_millis(1))),
//!         |n| async move { Ok(n + 1) },
//!     );
//! let stats = pipeline.stats(); // cheap to clone; readable while it runs
//! let mut stored: Vec<u64> = pipeline.try_collect().await?;
//! stored.sort();
//! assert_eq!(stored, [2, 5, 17]);
//!
//! let report = stats.report();
//! let parse = &report.stages[0];
//! assert_eq!((parse.items_in, parse.items_out, parse.skipped), (4, 3, 1));
//! assert_eq!(parse.last_error.as_deref(), Some("invalid digit found in string"));
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! # Statistics
//!
//! [`Pipeline::stats`] returns a [`PipelineStats`] handle, cheap to clone and
//! `Send + Sync`, whose [`stages`](PipelineStats::stages) and
//! [`report`](PipelineStats::report) read each stage's live counters: items
//! in and out, errors and skipped items, items dropped when the pipeline
//! stopped, items in flight, calls running, attempts and retries, busy time,
//! time blocked on the next stage, and the last error ([`StageStats`]). Per
//! stage, `items_in == items_out + errors + dropped + in_flight`, and
//! `in_flight` is 0 once the pipeline has ended.
//!
//! # Stopping
//!
//! The pipeline runs under a context of its own, a child of the one given to
//! [`context`](Pipeline::context) — else of the context current where the
//! pipeline was built ([`TaskContext::current`]), else of a fresh root. Every
//! stage's pool is bound to it. So:
//!
//! * **Close** — the source ends: every stage finishes what it holds and the
//!   pipeline ends ([`Outcome::Completed`]). A source made to end on a
//!   [`Shutdown`](crate::shutdown::Shutdown)'s drain
//!   ([`close_on`](crate::ConcurrentStreamExt::close_on)) drains the whole
//!   pipeline this way.
//! * **Cancel** — the parent context is cancelled or its deadline passes:
//!   every stage stops at once, and the pipeline's last item is
//!   `Err(E::from(ContextError))` ([`Outcome::Stopped`]): a stopped run is
//!   never mistaken for a complete one.
//! * **Fail** — a stage with the stop policy fails: the pipeline's own context
//!   is cancelled (never its parent), and the error is the last item
//!   ([`Outcome::Failed`]).
//! * **Drop** — dropping the pipeline aborts every stage's tasks.
//! * **Panic** — a panic in a stage's function is resumed in the consumer.
//!
//! Under a [`Shutdown`](crate::shutdown::Shutdown): close the source on its
//! drain, bind the pipeline to its context (cancelled when the grace period
//! is over) and run it as one of its tasks:
//!
//! ```
//! use std::time::Duration;
//! use futures::StreamExt;
//! use tokio_conc::pipeline::Outcome;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let shutdown = Shutdown::new(); // a service adds .on_signals()
//! let requests = futures::stream::iter(0..)
//!     .then(|n| async move { tokio::time::sleep(Duration::from_millis(10)).await; n })
//!     .close_on(&shutdown);
//! let pipeline = Pipeline::new(requests)
//!     .context(shutdown.context())
//!     .stage(Stage::new("handle").workers(4), |n: u64| async move { Ok::<_, ContextError>(n) });
//! let stats = pipeline.stats();
//! shutdown.spawn("pipeline", pipeline.run());
//! tokio::time::sleep(Duration::from_millis(95)).await;
//! shutdown.trigger();
//! let report = shutdown.wait(Duration::from_secs(5)).await;
//! assert!(report.is_clean(), "drained within the grace period");
//! let handle = &stats.report().stages[0];
//! assert_eq!(handle.items_in, handle.items_out, "nothing in flight was lost");
//! assert_eq!(stats.report().outcome, Outcome::Completed);
//! # }
//! ```
//!
//! # Tracing
//!
//! Each call runs inside a `stage` span whose `stage` field is the stage's
//! name, within the pool's `worker` span (whose `pool` field is the stage's
//! name too). A retry logs at `debug`, a skipped item at `warn`.

mod run;
mod stage;
mod stats;

use std::borrow::Cow;
use std::fmt::{self, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures::stream::{BoxStream, FusedStream};
use futures::{Stream, StreamExt};

use crate::ConcurrentStreamExt;
use crate::context::{ContextError, TaskContext};
use crate::pool::Workers;
use run::{ErrorSlot, StageOutput, StageRun, Ticket, Tracked};

pub use stage::{Attempts, NoRetry, Retry, Stage};
pub use stats::{Outcome, PipelineReport, PipelineStats, StageStats};

/// A boxed error that any error converts into with `?`, and that
/// [`ContextError`] converts into too: a ready-made error type for a
/// [`Pipeline`] whose stages fail in different ways.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Build<T> = Box<dyn FnOnce(&TaskContext) -> BoxStream<'static, T> + Send>;

/// Named stages over the pool operators, with live per-stage statistics and
/// a per-stage error policy. See the [module docs](self) for the whole story.
///
/// A `Pipeline` is a `Stream` of `Result<T, E>`: the last stage's results as
/// `Ok`, and at most one `Err` — the first failure of a stage with the stop
/// policy, or `E::from(ContextError)` when its context stopped it — after
/// which it ends. Nothing runs until it is first polled (then each stage's
/// pool is built under the pipeline's context).
///
/// ```
/// use futures::TryStreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let out: Result<Vec<u32>, ContextError> = Pipeline::new(futures::stream::iter(1..=4_u32))
///     .stage(Stage::new("double").workers(2), |n| async move { Ok(n * 2) })
///     .try_collect()
///     .await;
/// assert_eq!(out.unwrap(), [2, 4, 6, 8]);
/// # }
/// ```
#[must_use = "a Pipeline does nothing until polled"]
pub struct Pipeline<T, E> {
    build: Option<Build<T>>,
    running: Option<BoxStream<'static, T>>,
    context: Option<TaskContext>,
    ambient: Option<TaskContext>,
    run_ctx: Option<TaskContext>,
    slot: ErrorSlot<E>,
    stats: PipelineStats,
    /// The stages' streams have ended; waiting for their items to be
    /// accounted for.
    settling: bool,
    finished: bool,
}

impl<T, E> Pipeline<T, E>
where
    T: Send + 'static,
{
    /// A pipeline reading `source`. It takes the context current here
    /// ([`TaskContext::current`]), if any, as its parent unless
    /// [`context`](Self::context) gives one.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let pipeline = Pipeline::new(futures::stream::iter(["a", "b"]))
    ///     .stage("upper", |s: &str| async move { Ok::<_, ContextError>(s.to_uppercase()) });
    /// # let _ = pipeline;
    /// ```
    pub fn new<S>(source: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        Pipeline {
            build: Some(Box::new(move |_: &TaskContext| source.boxed())),
            running: None,
            context: None,
            ambient: crate::internal::ambient_context(None),
            run_ctx: None,
            slot: Arc::new(Mutex::new(None)),
            stats: PipelineStats::new(),
            settling: false,
            finished: false,
        }
    }

    /// Runs the pipeline under a child of `ctx`: cancelling `ctx` (or its
    /// deadline passing) stops every stage, and the pipeline then ends with
    /// `Err(E::from(ctx's error))`. May be called any time before the first
    /// poll.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// ctx.cancel();
    /// let out: Vec<Result<u32, ContextError>> = Pipeline::new(futures::stream::iter(1..=3_u32))
    ///     .stage("id", |n| async move { Ok(n) })
    ///     .context(&ctx)
    ///     .collect()
    ///     .await;
    /// assert_eq!(out, [Err(ContextError::Cancelled)]);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The context given to [`context`](Self::context), if any.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// let pipeline: Pipeline<u8, ContextError> = Pipeline::new(futures::stream::iter([1_u8]));
    /// assert!(pipeline.task_context().is_none());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// A handle on the live statistics of every stage (see [`PipelineStats`]).
    /// Take it before consuming the pipeline to read the final report after.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let pipeline = Pipeline::new(futures::stream::iter([1, 2]))
    ///     .stage("inc", |n: i32| async move { Ok::<_, ContextError>(n + 1) });
    /// assert_eq!(pipeline.stats().stages().len(), 1);
    /// ```
    pub fn stats(&self) -> PipelineStats {
        self.stats.clone()
    }

    /// Applies any stream operator between stages — a rate limit, a filter, a
    /// batching step. It has no statistics of its own and runs under the
    /// pipeline's context only if it is given one.
    ///
    /// ```
    /// use futures::{StreamExt, TryStreamExt};
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let even: Vec<u32> = Pipeline::new(futures::stream::iter(1..=6_u32))
    ///     .through(|s| s.filter(|n| std::future::ready(n % 2 == 0)))
    ///     .stage("halve", |n| async move { Ok::<_, ContextError>(n / 2) })
    ///     .try_collect()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(even, [1, 2, 3]);
    /// # }
    /// ```
    pub fn through<U, S, G>(self, operator: G) -> Pipeline<U, E>
    where
        U: Send + 'static,
        S: Stream<Item = U> + Send + 'static,
        G: FnOnce(BoxStream<'static, T>) -> S + Send + 'static,
    {
        self.extend(move |upstream, _| operator(upstream).boxed())
    }

    fn extend<U>(
        mut self,
        next: impl FnOnce(BoxStream<'static, T>, &TaskContext) -> BoxStream<'static, U> + Send + 'static,
    ) -> Pipeline<U, E>
    where
        U: Send + 'static,
    {
        let previous = self
            .build
            .take()
            .expect("a pipeline is extended only before it runs");
        Pipeline {
            build: Some(Box::new(move |ctx: &TaskContext| next(previous(ctx), ctx))),
            running: None,
            context: self.context.take(),
            ambient: self.ambient.take(),
            run_ctx: None,
            slot: self.slot.clone(),
            stats: self.stats.clone(),
            settling: false,
            finished: false,
        }
    }
}

impl<T, E> Pipeline<T, E>
where
    T: Send + 'static,
    E: Display + Send + 'static,
{
    /// Adds a stage: `f` runs on every item on `stage`'s workers (spawned
    /// tasks, at most `workers` calls at once) and returns `Result`; `stage`
    /// names it and sets its order and error policy. A name alone
    /// (`"parse"`) is one worker, input order, stop on the first error.
    ///
    /// Every stage of a pipeline returns the same error type `E`, which `?`
    /// converts into ([`BoxError`] takes any error).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use futures::TryStreamExt;
    /// use tokio_conc::pipeline::BoxError;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let pipeline = Pipeline::new(futures::stream::iter([10_u32]))
    ///     .stage(
    ///         Stage::new("fetch").retry(Retry::exponential(Duration::from_millis(100)).max_attempts(3)),
    ///         move |n| {
    ///             let call = calls.fetch_add(1, Ordering::SeqCst);
    ///             async move {
    ///                 if call < 2 { Err(BoxError::from("flaky")) } else { Ok(n) }
    ///             }
    ///         },
    ///     );
    /// let stats = pipeline.stats();
    /// let start = tokio::time::Instant::now();
    /// let out: Vec<u32> = pipeline.try_collect().await.unwrap();
    /// assert_eq!(out, [10]);
    /// assert_eq!(start.elapsed(), Duration::from_millis(300)); // waited 100 + 200 ms
    /// let fetch = stats.stage("fetch").unwrap();
    /// assert_eq!((fetch.attempts, fetch.retries), (3, 2));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When the pipeline is first polled outside a Tokio runtime.
    pub fn stage<U, P, F, Fut>(self, stage: impl Into<Stage<P>>, f: F) -> Pipeline<U, E>
    where
        U: Send + 'static,
        P: Attempts<T>,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
    {
        let stage = stage.into();
        let counters = self.stats.add_stage(stage.name.clone(), stage.workers);
        let (slot, stats) = (self.slot.clone(), self.stats.clone());
        self.extend(move |upstream, ctx| {
            let jitter = stage::jitter_for::<T, P>(&stage.retry);
            let run = Arc::new(StageRun {
                f,
                attempts: stage.retry,
                on_failure: stage.on_failure,
                counters: counters.clone(),
                ctx: ctx.clone(),
                slot,
                stats,
                jitter,
            });
            let mut workers = Workers::new(stage.workers)
                .context(ctx)
                .name(stage.name.clone());
            if let Some(buffer) = stage.buffer {
                workers = workers.buffer(buffer);
            }
            let taken = counters.clone();
            let input = upstream.map(move |value| Tracked {
                value,
                ticket: Ticket::take_in(&taken),
            });
            let call = move |item: Tracked<T>| {
                let run = run.clone();
                async move { run.call(item).await }
            };
            if stage.ordered {
                StageOutput::new(input.par_map(workers, call), counters).boxed()
            } else {
                StageOutput::new(input.par_map_unordered(workers, call), counters).boxed()
            }
        })
    }
}

impl<T, E> Pipeline<T, E>
where
    T: Send + 'static,
    E: From<ContextError> + Send + 'static,
{
    /// Runs the pipeline to its end, dropping the last stage's results (a
    /// pipeline whose last stage is a sink), and returns the report — or the
    /// error that stopped it (the report is then in [`stats`](Self::stats)).
    ///
    /// ```
    /// use tokio_conc::pipeline::Outcome;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let report = Pipeline::new(futures::stream::iter(1..=100_u32))
    ///     .stage(Stage::new("store").workers(4), |_| async { Ok::<(), ContextError>(()) })
    ///     .run()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(report.stages[0].items_out, 100);
    /// assert_eq!(report.outcome, Outcome::Completed);
    /// # }
    /// ```
    pub async fn run(mut self) -> Result<PipelineReport, E> {
        while let Some(item) = self.next().await {
            item?;
        }
        Ok(self.stats.report())
    }

    fn start(&mut self) -> &mut BoxStream<'static, T> {
        let build = self.build.take();
        self.running.get_or_insert_with(|| {
            crate::internal::runtime_handle("Pipeline");
            let parent = self
                .context
                .clone()
                .or_else(|| self.ambient.clone())
                .unwrap_or_default();
            let run_ctx = parent.child();
            self.stats.mark_started();
            let stream = (build.expect("built once"))(&run_ctx);
            self.run_ctx = Some(run_ctx);
            stream
        })
    }

    /// The end of the stages' streams: the stored failure, the context's
    /// error, or a clean end.
    fn finish(&mut self) -> Option<E> {
        self.finished = true;
        let failure = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if failure.is_some() {
            return failure; // the stage recorded the outcome
        }
        let stopped = self.run_ctx.as_ref().and_then(TaskContext::err);
        match stopped {
            Some(why) => {
                self.stats.mark_ended(Outcome::Stopped(why.clone()));
                Some(E::from(why))
            }
            None => {
                self.stats.mark_ended(Outcome::Completed);
                None
            }
        }
    }
}

impl<T, E> Stream for Pipeline<T, E>
where
    T: Send + 'static,
    E: From<ContextError> + Send + 'static,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if !self.settling {
            if let Some(item) = ready!(self.start().poll_next_unpin(cx)) {
                return Poll::Ready(Some(Ok(item)));
            }
            // Dropping the stages aborts the pools that had not ended yet
            // (upstream of a failure); their workers drop what they held.
            self.running = None;
            self.settling = true;
        }
        ready!(self.stats.poll_settled(cx));
        Poll::Ready(self.finish().map(Err))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        match (&self.running, self.settling) {
            // At most the error at the end.
            (_, true) => (0, Some(1)),
            // One more for a possible error at the end.
            (Some(stream), false) => (0, stream.size_hint().1.and_then(|n| n.checked_add(1))),
            (None, false) => (0, None),
        }
    }
}

impl<T, E> FusedStream for Pipeline<T, E>
where
    T: Send + 'static,
    E: From<ContextError> + Send + 'static,
{
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl<T, E> Drop for Pipeline<T, E> {
    fn drop(&mut self) {
        if self.run_ctx.is_some() && !self.finished {
            let outcome = if std::thread::panicking() {
                Outcome::Panicked
            } else {
                Outcome::Abandoned
            };
            self.stats.mark_ended(outcome);
        }
    }
}

impl<T, E> fmt::Debug for Pipeline<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stages: Vec<Cow<'static, str>> =
            self.stats.stages().into_iter().map(|s| s.name).collect();
        f.debug_struct("Pipeline")
            .field("stages", &stages)
            .field("started", &self.run_ctx.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
