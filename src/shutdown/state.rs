//! The state every handle of one [`Shutdown`](super::Shutdown) shares: its
//! phases, its root context and the registry of its tracked tasks.
//!
//! Invariants:
//!
//! * **One trigger.** `triggered_at` is set once, under its lock, before the
//!   drain token fires; `draining` is raised in the same critical section, so
//!   whoever sees `is_draining()` can read the trigger's instant.
//! * **Abort is final.** `Registry::aborting` goes from `false` to `true` once,
//!   under the registry's lock, and every task registered at that moment is
//!   aborted. A task registers (under the same lock) before it is spawned and
//!   attaches its abort handle after; whichever of "attach" and "abort phase"
//!   takes the lock second aborts it, so no task slips past the abort.
//! * **Names are recorded by the task itself.** A task's guard lives in its
//!   future. When the future is dropped unfinished after the abort phase began,
//!   the guard records the task as aborted; a future that returned or panicked
//!   never is. The guard is dropped before the task's tracker token (it lives
//!   inside the tracked future), so once the tracker is empty every aborted
//!   name is recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::report::ShutdownReport;
use crate::context::TaskContext;

pub(super) struct State {
    /// The root context: cancelled when the abort phase starts.
    pub(super) ctx: TaskContext,
    /// Raised at the trigger: a lock-free `is_draining`.
    draining: AtomicBool,
    /// Fires at the trigger.
    pub(super) drain: CancellationToken,
    /// Fires to skip what is left of the grace period (a second signal).
    pub(super) hurry: CancellationToken,
    pub(super) tracker: TaskTracker,
    triggered_at: Mutex<Option<Instant>>,
    registry: Mutex<Registry>,
    /// The report of the first `wait` to finish; later ones return it again.
    pub(super) report: std::sync::OnceLock<ShutdownReport>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// The tracked tasks still running, by spawn order; the abort handle is
    /// attached just after the spawn.
    running: HashMap<u64, Option<AbortHandle>>,
    aborting: bool,
    aborted: Vec<(u64, String)>,
    panicked: Vec<(u64, String)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing is left half-updated across a panic in these critical sections.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(super) fn new() -> Self {
        State {
            ctx: TaskContext::background(),
            draining: AtomicBool::new(false),
            drain: CancellationToken::new(),
            hurry: CancellationToken::new(),
            tracker: TaskTracker::new(),
            triggered_at: Mutex::new(None),
            registry: Mutex::new(Registry::default()),
            report: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the drain once; later calls change nothing.
    pub(super) fn trigger(&self) {
        let mut at = lock(&self.triggered_at);
        if at.is_some() {
            return;
        }
        *at = Some(Instant::now());
        self.draining.store(true, Ordering::Release);
        tracing::info!(tasks = self.tracker.len(), "shutdown: draining started");
        self.drain.cancel();
    }

    pub(super) fn triggered_at(&self) -> Option<Instant> {
        *lock(&self.triggered_at)
    }

    /// Skips what is left of the grace period.
    pub(super) fn hurry(&self) {
        self.hurry.cancel();
    }

    /// Whether the abort phase has begun.
    pub(super) fn is_aborting(&self) -> bool {
        lock(&self.registry).aborting
    }

    /// The abort phase: every tracked task still running is aborted, then the
    /// root context is cancelled (for what is bound to it but not tracked).
    /// Aborting first makes the report exact: a tracked task that was still
    /// running is named, never raced by its own reaction to the context.
    pub(super) fn abort(&self) {
        let handles: Vec<AbortHandle> = {
            let mut registry = lock(&self.registry);
            if registry.aborting {
                return;
            }
            registry.aborting = true;
            registry.running.values().flatten().cloned().collect()
        };
        for handle in handles {
            handle.abort();
        }
        self.ctx.cancel();
    }

    /// Registers a task about to be spawned; its id orders the report.
    pub(super) fn register(&self) -> u64 {
        let mut registry = lock(&self.registry);
        let id = registry.next_id;
        registry.next_id += 1;
        registry.running.insert(id, None);
        id
    }

    /// Attaches the spawned task's abort handle; aborts it at once when the
    /// abort phase has already begun.
    pub(super) fn attach(&self, id: u64, handle: AbortHandle) {
        let aborting = {
            let mut registry = lock(&self.registry);
            if let Some(slot) = registry.running.get_mut(&id) {
                *slot = Some(handle.clone());
            }
            registry.aborting
        };
        if aborting {
            handle.abort();
        }
    }

    /// A task's future is gone: forget it, and record how it ended.
    fn release(&self, id: u64, name: &str, outcome: Outcome) {
        let aborted = {
            let mut registry = lock(&self.registry);
            registry.running.remove(&id);
            match outcome {
                Outcome::Returned => false,
                Outcome::Panicked => {
                    registry.panicked.push((id, name.to_owned()));
                    false
                }
                Outcome::Running if registry.aborting => {
                    registry.aborted.push((id, name.to_owned()));
                    true
                }
                // Dropped before the abort phase: aborted through its own
                // handle, or its runtime is shutting down. Not ours to report.
                Outcome::Running => false,
            }
        };
        if aborted {
            tracing::warn!(task = %name, "shutdown: aborted a task still running when the drain ended");
        }
    }

    /// The report as of now: call once the tracker is empty after the abort.
    pub(super) fn report(&self) -> ShutdownReport {
        let end = Instant::now();
        let drain_time = self
            .triggered_at()
            .map_or_else(Default::default, |at| end.saturating_duration_since(at));
        let registry = lock(&self.registry);
        ShutdownReport::new(
            in_spawn_order(&registry.aborted),
            in_spawn_order(&registry.panicked),
            drain_time,
        )
    }
}

fn in_spawn_order(tasks: &[(u64, String)]) -> Vec<String> {
    let mut tasks = tasks.to_vec();
    tasks.sort_by_key(|(id, _)| *id);
    tasks.into_iter().map(|(_, name)| name).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Running,
    Returned,
    Panicked,
}

/// Lives inside a tracked task's future and reports how it ended.
pub(super) struct TaskGuard {
    state: std::sync::Arc<State>,
    id: u64,
    name: String,
    outcome: Outcome,
}

impl TaskGuard {
    pub(super) fn new(state: std::sync::Arc<State>, id: u64, name: String) -> Self {
        TaskGuard {
            state,
            id,
            name,
            outcome: Outcome::Running,
        }
    }

    pub(super) fn ended(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.state.release(self.id, &self.name, self.outcome);
    }
}
