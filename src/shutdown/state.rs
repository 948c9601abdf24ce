//! The state every handle of one [`Shutdown`](super::Shutdown) shares: its
//! phases, its root context and the registry of its tracked tasks.
//!
//! Invariants:
//!
//! * **One trigger.** `triggered_at` is set once, under its lock, before the
//!   drain token fires; `draining` is raised in the same critical section, so
//!   whoever sees `is_draining()` can read the trigger's instant.
//! * **Abort is final.** `Registry::aborting` goes from `false` to `true` once,
//!   under the registry's lock; every task registered at that moment is named
//!   in the report (it outlived the drain), and so is every task registered
//!   later. A task registers (under the same lock) before it is spawned and
//!   attaches its abort handle after; whichever of "attach" and "abort the
//!   rest" takes the lock second aborts it, so no task slips past the abort.
//! * **A task leaves the registry from inside its own future.** Its guard
//!   lives in the future and removes it when the future is dropped (returned,
//!   panicked or aborted) — before the task's tracker token, which lives
//!   outside it — so once the tracker is empty the registry is too.

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

struct Entry {
    name: String,
    /// Attached just after the spawn.
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// The tracked tasks still running, by spawn order.
    running: HashMap<u64, Entry>,
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

    /// Starts the abort phase: every tracked task still running is named as
    /// aborted (logged, and kept for the report), then the root context is
    /// cancelled. Those tasks get to react to the cancellation before
    /// [`abort_tasks`](Self::abort_tasks) aborts what is left.
    pub(super) fn abort(&self) {
        let names: Vec<String> = {
            let mut registry = lock(&self.registry);
            if registry.aborting {
                return;
            }
            registry.aborting = true;
            let mut running: Vec<(u64, String)> = registry
                .running
                .iter()
                .map(|(id, entry)| (*id, entry.name.clone()))
                .collect();
            running.sort_by_key(|(id, _)| *id);
            registry.aborted.extend(running.iter().cloned());
            running.into_iter().map(|(_, name)| name).collect()
        };
        for name in &names {
            log_aborted(name);
        }
        self.ctx.cancel();
    }

    /// Aborts every tracked task still running (after [`abort`](Self::abort)).
    pub(super) fn abort_tasks(&self) {
        let handles: Vec<AbortHandle> = lock(&self.registry)
            .running
            .values()
            .filter_map(|entry| entry.abort.clone())
            .collect();
        for handle in handles {
            handle.abort();
        }
    }

    /// Registers a task about to be spawned; its id orders the report. After
    /// the abort phase began it is named at once: it will not run.
    pub(super) fn register(&self, name: &str) -> u64 {
        let (id, aborting) = {
            let mut registry = lock(&self.registry);
            let id = registry.next_id;
            registry.next_id += 1;
            let entry = Entry {
                name: name.to_owned(),
                abort: None,
            };
            registry.running.insert(id, entry);
            if registry.aborting {
                registry.aborted.push((id, name.to_owned()));
            }
            (id, registry.aborting)
        };
        if aborting {
            log_aborted(name);
        }
        id
    }

    /// Attaches the spawned task's abort handle; aborts it at once when the
    /// abort phase has already begun.
    pub(super) fn attach(&self, id: u64, handle: AbortHandle) {
        let aborting = {
            let mut registry = lock(&self.registry);
            if let Some(entry) = registry.running.get_mut(&id) {
                entry.abort = Some(handle.clone());
            }
            registry.aborting
        };
        if aborting {
            handle.abort();
        }
    }

    /// A task's future is gone: forget it, and record a panic.
    fn release(&self, id: u64, panicked: bool) {
        let mut registry = lock(&self.registry);
        let entry = registry.running.remove(&id);
        if let (true, Some(entry)) = (panicked, entry) {
            registry.panicked.push((id, entry.name));
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

fn log_aborted(name: &str) {
    tracing::warn!(task = %name, "shutdown: aborting a task still running when the drain ended");
}

/// Lives inside a tracked task's future and takes it out of the registry
/// when the future is gone, however it ended.
pub(super) struct TaskGuard {
    state: std::sync::Arc<State>,
    id: u64,
    panicked: bool,
}

impl TaskGuard {
    pub(super) fn new(state: std::sync::Arc<State>, id: u64) -> Self {
        TaskGuard {
            state,
            id,
            panicked: false,
        }
    }

    pub(super) fn panicked(&mut self) {
        self.panicked = true;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.state.release(self.id, self.panicked);
    }
}
