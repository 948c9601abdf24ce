//! Graceful shutdown: [`Shutdown`] drains a service's tasks, gives them a
//! grace period, aborts what is left and reports it in a [`ShutdownReport`] —
//! what Go services assemble by hand from `signal.NotifyContext`, closing
//! their inputs, `wg.Wait()` and `http.Server.Shutdown(ctx)` with a timeout.
//!
//! # Two phases
//!
//! 1. **Drain** (Close). [`trigger`](Shutdown::trigger) — or a signal, with
//!    [`on_signals`](Shutdown::on_signals) — starts it. Sources bound with
//!    [`close_on`](crate::ConcurrentStreamExt::close_on) end, so every operator
//!    downstream finishes what it holds and ends; tasks waiting on
//!    [`draining`](Shutdown::draining) wind down (a
//!    [`WorkerPool`](crate::pool::WorkerPool) is closed and joined there). The
//!    root [`context`](Shutdown::context) is *not* cancelled yet: in-flight
//!    work keeps running.
//! 2. **Abort** (Cancel). When every tracked task has ended, or the grace
//!    period given to [`wait`](Shutdown::wait) runs out (a second signal cuts
//!    it short), the root context is cancelled, which stops every operator,
//!    pool and group bound to it; the tracked tasks still running get to react
//!    to it for a moment (a few turns of the scheduler, no time), and what is
//!    left is aborted. The report names every task that outlived the drain,
//!    the way a goroutine dump names the stuck goroutines of a Go service.
//!
//! ```
//! use std::time::Duration;
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let shutdown = Shutdown::new(); // in a service: Shutdown::new().on_signals()
//!
//! let requests = futures::stream::iter(0..)
//!     .rate_limit(Rate::per_second(100))
//!     .close_on(&shutdown) // ends when draining begins
//!     .par_map_unordered(Workers::new(4).context(shutdown.context()), |r| async move {
//!         tokio::time::sleep(Duration::from_millis(30)).await; // handling it
//!         r
//!     });
//! let served = shutdown.spawn("server", requests.count());
//!
//! tokio::time::sleep(Duration::from_millis(500)).await;
//! shutdown.trigger(); // or Ctrl-C, with on_signals()
//! let report = shutdown.wait(Duration::from_secs(10)).await;
//!
//! assert!(report.is_clean(), "{report}");
//! assert!(report.drain_time() <= Duration::from_millis(30));
//! assert!(served.await.unwrap() >= 50, "requests in flight finished too");
//! # }
//! ```
//!
//! # Choices
//!
//! * **Handles.** `Shutdown` is cheap to [`Clone`]; clones share one shutdown,
//!   so any task may trigger it or watch it. [`draining`](Shutdown::draining)
//!   and [`close_on`](crate::ConcurrentStreamExt::close_on) hold no handle:
//!   prefer them inside tracked tasks (see dropping, below).
//! * **Tasks.** [`spawn`](Shutdown::spawn) returns Tokio's
//!   [`JoinHandle`]: await it for the task's output
//!   (or its panic); an aborted task's handle reports
//!   [`JoinError::is_cancelled`](tokio::task::JoinError::is_cancelled).
//!   Dropping the handle detaches nothing: the shutdown still tracks the task.
//! * **Spawning while draining** is allowed and the task is **tracked**: a
//!   drain often needs work of its own (a final flush, a goodbye message),
//!   and it gets the rest of the grace period like every other task. Once the
//!   abort phase has begun, a newly spawned task is aborted before it runs.
//! * **Dropping** the last handle of a shutdown whose [`wait`](Shutdown::wait)
//!   has not finished aborts its tasks and cancels its context, as dropping a
//!   [`TaskGroup`](crate::pool::TaskGroup) does: no task outlives it. A clone
//!   moved into a tracked task is a handle too, and keeps the shutdown alive
//!   until that task ends.
//! * **One run.** A shutdown runs once: after `wait` has returned, `wait`
//!   returns the same report again.
//!
//! # Tracing
//!
//! One `info` event when draining starts (with the number of tracked tasks),
//! one `warn` event per aborted task (with its `task` name), and one event
//! per signal received. Each tracked task runs inside a `task` span with its
//! `name`, nested in the [context's span](crate::TaskContext::span).

mod close_on;
mod report;
mod signals;
mod state;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

pub use close_on::CloseOn;
pub(crate) use close_on::close_on;
pub use report::ShutdownReport;

use self::state::{State, TaskGuard};
use crate::context::TaskContext;
use crate::internal::runtime_handle;

/// A service's graceful shutdown: a root [`TaskContext`], the service's
/// tracked tasks, and the two phases — drain, then abort — that end them. See
/// the [module docs](self) for the phases and the choices made.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Shutdown::new();
/// let draining = shutdown.draining();
/// shutdown.spawn("ticker", async move {
///     let mut ticks = 0;
///     tokio::select! {
///         () = draining => {}
///         () = async { loop {
///             tokio::time::sleep(Duration::from_secs(1)).await;
///             ticks += 1;
///         } } => {}
///     }
/// });
/// shutdown.spawn("stuck", std::future::pending::<()>());
///
/// let trigger = shutdown.clone();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_secs(3)).await;
///     trigger.trigger();
/// });
/// let report = shutdown.wait(Duration::from_secs(2)).await;
/// assert_eq!(report.aborted(), ["stuck"]);
/// assert!(shutdown.context().is_cancelled());
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    state: Arc<State>,
    /// Shared by the handles only (never by tasks or `close_on` streams): its
    /// drop is the drop of the last handle.
    owner: Arc<Owner>,
}

struct Owner {
    state: Arc<State>,
    /// The signal listener, when `on_signals` installed one.
    listener: Mutex<Option<AbortOnDropHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // After a finished `wait` this changes nothing; before, it ends every
        // tracked task. The listener goes with `self`.
        self.state.abort();
        self.state.abort_tasks();
    }
}

/// How many times `wait` lets the runtime run the tasks that outlived the
/// drain, after cancelling the context and before aborting them.
const REACTION_YIELDS: usize = 16;

impl Shutdown {
    /// A new shutdown with a fresh root [`context`](Self::context) (it never
    /// inherits [`TaskContext::current`]) and no tracked task. Needs no runtime.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let shutdown = Shutdown::new();
    /// assert!(!shutdown.is_draining());
    /// assert!(!shutdown.context().is_cancelled());
    /// ```
    pub fn new() -> Self {
        let state = Arc::new(State::new());
        Shutdown {
            owner: Arc::new(Owner {
                state: Arc::clone(&state),
                listener: Mutex::new(None),
            }),
            state,
        }
    }

    /// Triggers this shutdown on Ctrl-C (SIGINT), and on Unix on SIGTERM too
    /// (what `kill`, systemd and Kubernetes send). A second signal skips what
    /// is left of the grace period: [`wait`](Self::wait) aborts at once.
    ///
    /// The handlers are registered before this returns, so a signal that
    /// arrives right after is caught. As with any Tokio signal handler, the
    /// default action (ending the process) does not come back: after
    /// [`wait`](Self::wait) has returned (or the shutdown is dropped), further
    /// signals are ignored, so return from `main` then.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if the runtime cannot handle signals (its
    /// I/O driver is not enabled).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// #[tokio::main]
    /// async fn main() {
    ///     let shutdown = Shutdown::new().on_signals();
    ///     let draining = shutdown.draining();
    ///     shutdown.spawn("server", async move {
    ///         draining.await; // serve until Ctrl-C
    ///     });
    ///     let report = shutdown.wait(Duration::from_secs(30)).await;
    ///     println!("{report}");
    /// }
    /// ```
    #[must_use = "dropping the last handle of a shutdown aborts its tasks"]
    pub fn on_signals(self) -> Self {
        let listener = signals::listen(Arc::clone(&self.state));
        *self
            .owner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
        self
    }

    /// The root context: current in every tracked task, and the one to bind
    /// operators, pools and groups to (`Workers::new(n).context(shutdown.context())`).
    /// It is cancelled when the abort phase starts — not at the trigger — so
    /// in-flight work keeps running while the service drains.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let shutdown = Shutdown::new();
    /// shutdown.trigger();
    /// assert!(!shutdown.context().is_cancelled(), "draining is not cancelling");
    /// ```
    pub fn context(&self) -> &TaskContext {
        &self.state.ctx
    }

    /// Spawns `fut` as a tracked task named `name`, with the root
    /// [`context`](Self::context) current and inside a `task` span naming it.
    /// [`wait`](Self::wait) waits for it during the drain and aborts it (and
    /// names it in the report) if it outlives the grace period.
    ///
    /// Returns Tokio's [`JoinHandle`]: its output, the task's panic (which is
    /// also listed in [`ShutdownReport::panicked`]), or a cancelled
    /// [`JoinError`](tokio::task::JoinError) once aborted. Spawning while the
    /// shutdown drains is allowed and tracked like any other task; once the
    /// abort phase has begun, the task is aborted before it runs.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let answer = shutdown.spawn("answer", async {
    ///     assert!(TaskContext::current().is_some(), "the shutdown's context is current");
    ///     42
    /// });
    /// assert_eq!(answer.await.unwrap(), 42);
    /// assert!(shutdown.wait(Duration::from_secs(1)).await.is_clean());
    /// # }
    /// ```
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        runtime_handle("Shutdown::spawn");
        // Counted before it is registered: while the registry holds a task,
        // the tracker is not empty.
        let counted = self.state.tracker.token();
        let name = name.into();
        let span = tracing::info_span!("task", name = %name);
        let id = self.state.register(&name);
        // Moved into the future, so it leaves the registry even when the
        // task is aborted before its first poll.
        let mut guard = TaskGuard::new(Arc::clone(&self.state), id);
        let task = async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(output) => {
                    drop(guard);
                    output
                }
                Err(panic) => {
                    guard.panicked();
                    drop(guard);
                    std::panic::resume_unwind(panic)
                }
            }
        };
        let handle = self
            .state
            .ctx
            .spawn(self.state.tracker.track_future(task.instrument(span)));
        self.state.attach(id, handle.abort_handle());
        drop(counted);
        handle
    }

    /// Starts draining: [`close_on`](crate::ConcurrentStreamExt::close_on)
    /// streams end and [`draining`](Self::draining) completes. Idempotent: the
    /// first call starts the drain (and its clock), later ones change nothing.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let shutdown = Shutdown::new();
    /// shutdown.trigger();
    /// shutdown.trigger();
    /// assert!(shutdown.is_draining());
    /// ```
    pub fn trigger(&self) {
        self.state.trigger();
    }

    /// Whether draining has begun (by [`trigger`](Self::trigger), a signal,
    /// or [`wait`](Self::wait) finding every task ended).
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let shutdown = Shutdown::new();
    /// assert!(!shutdown.is_draining());
    /// shutdown.clone().trigger();
    /// assert!(shutdown.is_draining(), "clones share one shutdown");
    /// ```
    pub fn is_draining(&self) -> bool {
        self.state.is_draining()
    }

    /// Completes when draining begins (at once if it has). The future holds
    /// no handle of the shutdown, so a tracked task may keep it without
    /// keeping the shutdown alive. Cancel-safe: use it freely in `select!`.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let draining = shutdown.draining();
    /// let worker = tokio::spawn(async move {
    ///     draining.await;
    ///     "finished my work and left"
    /// });
    /// shutdown.trigger();
    /// assert_eq!(worker.await.unwrap(), "finished my work and left");
    /// # }
    /// ```
    pub fn draining(&self) -> WaitForCancellationFutureOwned {
        self.state.drain.clone().cancelled_owned()
    }

    /// How many tracked tasks are running.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let task = shutdown.spawn("idle", std::future::pending::<()>());
    /// assert_eq!(shutdown.running(), 1);
    /// task.abort();
    /// let _ = task.await;
    /// assert_eq!(shutdown.running(), 0);
    /// # }
    /// ```
    pub fn running(&self) -> usize {
        self.state.tracker.len()
    }

    /// Runs the shutdown to its end and reports it:
    ///
    /// 1. waits for a trigger, or for every tracked task to have ended
    ///    (then it triggers, so `close_on` streams end too) — with no tracked
    ///    task at all there is nothing to wait for, and it goes on at once
    ///    (await [`draining`](Self::draining) first to park until a signal);
    /// 2. lets the drain run until every tracked task has ended, for at most
    ///    `grace` after the trigger (a second signal ends it early);
    /// 3. names the tracked tasks still running as aborted, cancels the root
    ///    [`context`](Self::context) (in every case), lets those tasks react
    ///    to it for a few turns of the scheduler (one that stops on
    ///    cancellation ends there), aborts the rest, waits until they are
    ///    gone, stops listening for signals, and returns the report.
    ///
    /// The future holds a handle of the shutdown and needs no borrow
    /// (`tokio::spawn(shutdown.wait(grace))` works); dropping it before the
    /// end leaves the shutdown where it was. Calling `wait` again, or from
    /// several clones, returns the first report. An aborted task stops at its
    /// next `.await`; one that never yields holds up step 3.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// for job in 1..=3_u64 {
    ///     shutdown.spawn(format!("job-{job}"), tokio::time::sleep(Duration::from_secs(job)));
    /// }
    /// // No trigger: every task ends on its own after 3 s.
    /// let report = shutdown.wait(Duration::from_secs(10)).await;
    /// assert!(report.is_clean());
    /// assert_eq!(report.drain_time(), Duration::ZERO);
    /// assert!(shutdown.is_draining() && shutdown.context().is_cancelled());
    /// # }
    /// ```
    pub fn wait(&self, grace: Duration) -> impl Future<Output = ShutdownReport> + Send + 'static {
        let this = self.clone();
        async move { this.run_to_end(grace).await }
    }

    async fn run_to_end(&self, grace: Duration) -> ShutdownReport {
        let state = &*self.state;
        if let Some(report) = state.report.get() {
            return report.clone();
        }
        // The tracker's `wait` completes once it is closed and empty; closing
        // it does not stop it from tracking tasks spawned later.
        state.tracker.close();
        if !state.is_draining() {
            tokio::select! {
                biased;
                () = state.drain.cancelled() => {}
                () = state.tracker.wait() => {}
            }
            state.trigger();
        }
        let deadline = state.triggered_at().and_then(|at| at.checked_add(grace));
        let grace_over = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = state.tracker.wait() => {}
            () = state.hurry.cancelled() => {}
            () = grace_over => {}
        }
        state.abort();
        // The tasks still running see the cancelled context and get to run a
        // little (a task that stops on cancellation ends here); then the rest
        // are aborted.
        for _ in 0..REACTION_YIELDS {
            if state.tracker.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        state.abort_tasks();
        state.tracker.wait().await;
        let report = state.report.get_or_init(|| state.report()).clone();
        self.stop_listening();
        report
    }

    fn stop_listening(&self) {
        let listener = self
            .owner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(listener);
    }
}

impl Default for Shutdown {
    /// The same as [`Shutdown::new`].
    fn default() -> Self {
        Shutdown::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("draining", &self.is_draining())
            .field("aborting", &self.state.is_aborting())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_handle<T: Send + Sync + Clone + fmt::Debug + 'static>() {}

    #[test]
    fn handles_and_reports_move_between_threads() {
        assert_handle::<Shutdown>();
        assert_handle::<ShutdownReport>();
    }

    #[test]
    #[should_panic(expected = "Shutdown::spawn must be called within a Tokio runtime")]
    fn spawning_outside_a_runtime_panics_clearly() {
        drop(Shutdown::new().spawn("orphan", async {}));
    }

    #[test]
    #[should_panic(expected = "Shutdown::on_signals must be called within a Tokio runtime")]
    fn signals_outside_a_runtime_panic_clearly() {
        let _ = Shutdown::new().on_signals();
    }

    #[test]
    fn dropping_the_last_handle_cancels_the_context() {
        let shutdown = Shutdown::new();
        let ctx = shutdown.context().clone();
        let clone = shutdown.clone();
        drop(shutdown);
        assert!(!ctx.is_cancelled(), "a clone still holds it");
        drop(clone);
        assert!(ctx.is_cancelled());
    }
}
