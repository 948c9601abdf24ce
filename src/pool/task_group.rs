//! [`TaskGroup`]: Go's `errgroup` — run tasks together, get the first error,
//! and cancel the rest through a shared context.
//!
//! Invariants: every task handed to [`spawn`](TaskGroup::spawn),
//! [`spawn_wait`](TaskGroup::spawn_wait) or an accepted
//! [`try_spawn`](TaskGroup::try_spawn) is started exactly once (a failure
//! only cancels the context the task sees), in the order it was handed over
//! when a limit queues it; at most `limit` run at once (each holds one permit
//! of the limit's semaphore from its start to its end); `wait` returns only
//! after every task has ended.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::context::TaskContext;
use crate::internal::runtime_handle;

/// A group of tasks that succeed or fail together — Go's `errgroup.Group` made
/// with `errgroup.WithContext`.
///
/// * [`spawn`](Self::spawn) runs a fallible future on its own Tokio task, with the
///   group's [`context`](Self::context) current.
/// * The **first** task to return `Err` (by time, not by spawn order) cancels the
///   group's context, so the other tasks, watching it, can stop early.
///   Cancellation is cooperative, as in Go: a task ends when it notices (for
///   example through [`TaskContext::run`]) and returns whatever it chooses.
/// * **Every task is started**, as Go's `Go` always calls its function: one
///   not yet started when another fails (queued behind a
///   [`limit`](Self::limit), not yet polled, or spawned later) still starts,
///   and sees the cancelled context. Which tasks run never depends on
///   scheduling.
/// * [`wait`](Self::wait) waits for every task, then returns the first error;
///   [`wait_all`](Self::wait_all) returns all of them. With
///   [`keep_going`](Self::keep_going) an error does not cancel anything, so
///   every task runs to its end and `wait_all` reports every failure.
/// * A **panic** in a task is never lost: it cancels the group's context (in
///   both modes) and is resumed by `wait`/`wait_all` once every task has ended.
///   A panic wins over errors, and the first panic over later ones.
/// * When an error or a panic stops the group, its context says why, as Go's
///   `context.Cause` does: [`err`](TaskContext::err) is a
///   [`ContextError::Cause`](crate::context::ContextError::Cause) holding a
///   [`GroupStopped`]. (The task's own error goes to `wait`, not into the
///   context, so `E` needs no bounds.)
/// * The group's context is a [child](TaskContext::child) of the one given to
///   [`new`](Self::new): cancelling the parent cancels the group too, never
///   the reverse. It is also cancelled when `wait` returns, as Go's is.
///   A cancelled parent does not keep tasks from starting: they start, see the
///   cancelled context and report what they choose, so `wait` never reports
///   success for work that was silently skipped.
/// * Dropping the group (or the `wait` future) aborts its tasks: none outlives it.
///
/// ```
/// use std::time::Duration;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut group = TaskGroup::new(&TaskContext::background());
/// for n in 1..=3_u64 {
///     let ctx = group.context().clone();
///     group.spawn(async move {
///         if n == 2 {
///             return Err(format!("task {n} failed"));
///         }
///         // Slow tasks give up when a sibling fails.
///         ctx.run(tokio::time::sleep(Duration::from_secs(n * 10)))
///             .await
///             .map_err(|stopped| format!("task {n}: {stopped}"))
///     });
/// }
/// assert_eq!(group.wait().await, Err("task 2 failed".to_string()));
/// # }
/// ```
pub struct TaskGroup<E> {
    ctx: TaskContext,
    tasks: JoinSet<()>,
    outcome: Arc<Outcome<E>>,
    limit: Option<Arc<Semaphore>>,
    fail_fast: bool,
    span: tracing::Span,
}

/// What the tasks report, in the order it happened.
struct Outcome<E> {
    errors: Mutex<Vec<E>>,
    panic: Mutex<Option<Box<dyn Any + Send + 'static>>>,
}

/// What [`TaskGroup::try_spawn`] returns when the group is at its limit:
/// the task, handed back unstarted.
///
/// ```
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(1);
/// group.try_spawn(std::future::pending()).unwrap();
/// let refused = group.try_spawn(async { Ok(()) }).unwrap_err();
/// assert_eq!(refused.to_string(), "the task group is at its limit");
/// let _task = refused.into_inner(); // run it later, or elsewhere
/// # group.context().cancel();
/// # }
/// ```
pub struct TrySpawnError<F> {
    task: F,
}

impl<F> TrySpawnError<F> {
    /// The task that was not started.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(1);
    /// group.try_spawn(async { Ok(()) }).unwrap();
    /// if let Err(refused) = group.try_spawn(async { Ok(()) }) {
    ///     group.spawn(refused.into_inner()); // queue it after all
    /// }
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn into_inner(self) -> F {
        self.task
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrySpawnError").finish_non_exhaustive()
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task group is at its limit")
    }
}

impl<F> std::error::Error for TrySpawnError<F> {}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only pushes and takes happen under these locks; a poisoned one is whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: Send + 'static> TaskGroup<E> {
    /// An empty group whose context is a child of `ctx`.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let parent = TaskContext::background();
    /// let group: TaskGroup<std::io::Error> = TaskGroup::new(&parent);
    /// parent.cancel();
    /// assert!(group.context().is_cancelled());
    /// ```
    pub fn new(ctx: &TaskContext) -> Self {
        let ctx = ctx.child();
        TaskGroup {
            span: ctx.span(),
            ctx,
            tasks: JoinSet::new(),
            outcome: Arc::new(Outcome {
                errors: Mutex::new(Vec::new()),
                panic: Mutex::new(None),
            }),
            limit: None,
            fail_fast: true,
        }
    }

    /// At most `limit` tasks run at once (Go's `SetLimit`). Three ways to add
    /// a task at the limit: [`spawn`](Self::spawn) never waits — the task is
    /// queued (as a parked Tokio task holding its future; the queue has no
    /// bound) and starts, in spawn order, when one ends;
    /// [`spawn_wait`](Self::spawn_wait) waits for room first, as Go's `Go`
    /// blocks; [`try_spawn`](Self::try_spawn) hands the task back at once
    /// (Go's `TryGo`). Set it before spawning: tasks already spawned keep
    /// the limit they were spawned under.
    ///
    /// # Panics
    ///
    /// If `limit` is 0: no task could ever start.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(2);
    /// for _ in 0..10 {
    ///     group.spawn(async { Ok(()) });
    /// }
    /// assert_eq!(group.wait().await, Ok(()));
    /// # }
    /// ```
    pub fn limit(mut self, limit: usize) -> Self {
        assert!(limit > 0, "`limit` must be at least 1, got 0");
        self.limit = Some(Arc::new(Semaphore::new(limit)));
        self
    }

    /// Errors no longer cancel the group's context: every task runs to its
    /// end without being told to stop, and [`wait_all`](Self::wait_all) reports every
    /// error (Go's `errors.Join` over all results). Panics still cancel.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    /// for n in 0..5 {
    ///     group.spawn(async move { if n % 2 == 0 { Err(n) } else { Ok(()) } });
    /// }
    /// let mut errors = group.wait_all().await;
    /// errors.sort();
    /// assert_eq!(errors, vec![0, 2, 4]);
    /// # }
    /// ```
    pub fn keep_going(mut self) -> Self {
        self.fail_fast = false;
        self
    }

    /// The group's context: current inside every task; cancelled by the first
    /// error (unless [`keep_going`](Self::keep_going)), by a panic, by the parent
    /// context, and when the group is waited on or dropped.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let group: TaskGroup<()> = TaskGroup::new(&TaskContext::background());
    /// assert!(!group.context().is_cancelled());
    /// ```
    pub fn context(&self) -> &TaskContext {
        &self.ctx
    }

    /// Runs `task` on a new Tokio task in the group, with the group's context
    /// as [`TaskContext::current`] and inside its span. Never waits; see
    /// [`limit`](Self::limit) for how a limit queues tasks. The task is always
    /// started, also after the group has failed: it then sees the cancelled
    /// context (as Go's `Go` always calls its function).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::new(&TaskContext::background());
    /// group.spawn(async {
    ///     let ctx = TaskContext::current().expect("the group's context is current");
    ///     assert!(!ctx.is_cancelled());
    ///     Ok::<(), String>(())
    /// });
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let runtime = runtime_handle("TaskGroup::spawn");
        let queued = self.limit.clone().map(queue_for_slot);
        let slot = async move {
            match queued {
                Some(queued) => Some(queued.await),
                None => None,
            }
        };
        self.start(task, slot, &runtime);
    }

    /// Runs `task` like [`spawn`](Self::spawn) if the group is below its
    /// [`limit`](Self::limit) (or has none); otherwise hands it back at once,
    /// unstarted (Go's `TryGo`). Never waits. Tasks queued by `spawn` are
    /// ahead of it: it is refused while any are waiting.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError`], holding `task`, when `limit` tasks are running.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(2);
    /// let started = (0..5)
    ///     .filter(|_| group.try_spawn(async { Ok(()) }).is_ok())
    ///     .count();
    /// assert_eq!(started, 2, "the others were handed back");
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn try_spawn<F>(&mut self, task: F) -> Result<(), TrySpawnError<F>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let runtime = runtime_handle("TaskGroup::try_spawn");
        let slot = match &self.limit {
            Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(TrySpawnError { task }),
            },
            None => None,
        };
        self.start(task, std::future::ready(slot), &runtime);
        Ok(())
    }

    /// Runs `task` like [`spawn`](Self::spawn), first waiting until the group
    /// is below its [`limit`](Self::limit) — Go's `Go`, which blocks there —
    /// so a producer of tasks is held back instead of queueing them without
    /// bound. Without a limit it does not wait. Waiters get room in the order
    /// they asked, behind tasks already queued by `spawn`. The wait does not
    /// end when the group's context is cancelled (running tasks end, and
    /// room comes); dropping the returned future gives up the place and
    /// drops `task` unstarted.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(2);
    /// let start = tokio::time::Instant::now();
    /// for _ in 0..6 {
    ///     group
    ///         .spawn_wait(async {
    ///             tokio::time::sleep(Duration::from_secs(1)).await;
    ///             Ok(())
    ///         })
    ///         .await;
    /// }
    /// // The fifth and sixth had to wait for room: two batches of one second.
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub async fn spawn_wait<F>(&mut self, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let runtime = runtime_handle("TaskGroup::spawn_wait");
        let slot = match &self.limit {
            Some(limit) => Some(
                Arc::clone(limit)
                    .acquire_owned()
                    .await
                    .expect("the limit is never closed"),
            ),
            None => None,
        };
        self.start(task, std::future::ready(slot), &runtime);
    }

    /// Spawns `task` to run once `slot` gives it its place under the limit
    /// (`None`: no limit), holding that place until it ends.
    fn start<F, S>(&mut self, task: F, slot: S, runtime: &tokio::runtime::Handle)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        S: Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static,
    {
        // Ended tasks would otherwise stay in the set until `wait`: a
        // long-lived group would grow with every task it ever ran.
        while let Some(joined) = self.tasks.try_join_next() {
            // Tasks catch their own panics; one that escaped anyway is kept
            // like theirs, for `wait` to resume.
            if let Err(error) = joined {
                if error.is_panic() {
                    lock(&self.outcome.panic).get_or_insert(error.into_panic());
                    self.ctx.cancel_with(GroupStopped::TaskPanicked);
                }
            }
        }
        let ctx = self.ctx.clone();
        let outcome = Arc::clone(&self.outcome);
        let fail_fast = self.fail_fast;
        let run = async move {
            let _slot = slot.await;
            // Awaited in a block of its own so that `task` is also dropped
            // inside the catch: a panic in its destructor is the task's too.
            #[expect(
                clippy::redundant_async_block,
                reason = "drops `task` inside the catch"
            )]
            let outcome_of_task = AssertUnwindSafe(async move { task.await })
                .catch_unwind()
                .await;
            match outcome_of_task {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    lock(&outcome.errors).push(error);
                    if fail_fast {
                        ctx.cancel_with(GroupStopped::TaskFailed);
                    }
                }
                Err(payload) => {
                    lock(&outcome.panic).get_or_insert(payload);
                    ctx.cancel_with(GroupStopped::TaskPanicked);
                }
            }
        };
        let run = self.ctx.scope(run).instrument(self.span.clone());
        self.tasks.spawn_on(run, runtime);
    }

    /// Waits for every task to end, then returns the first error, if any.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of any task, once every task has ended.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::new(&TaskContext::background());
    /// group.spawn(async { Err("disk full") });
    /// group.spawn(async { Ok(()) });
    /// assert_eq!(group.wait().await, Err("disk full"));
    /// # }
    /// ```
    pub async fn wait(mut self) -> Result<(), E> {
        self.settle().await;
        match lock(&self.outcome.errors).drain(..).next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Waits for every task to end, then returns every error in the order they
    /// happened — empty when all succeeded. In the default fail-fast mode that
    /// is the first error and those of tasks that were already running; with
    /// [`keep_going`](Self::keep_going), one per failed task.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of any task, once every task has ended.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group = TaskGroup::<&str>::new(&TaskContext::background());
    /// group.spawn(async { Ok(()) });
    /// assert!(group.wait_all().await.is_empty());
    /// # }
    /// ```
    pub async fn wait_all(mut self) -> Vec<E> {
        self.settle().await;
        std::mem::take(&mut *lock(&self.outcome.errors))
    }

    async fn settle(&mut self) {
        while let Some(joined) = self.tasks.join_next().await {
            // Tasks catch their own panics; this is only the runtime going away.
            if let Err(error) = joined {
                if error.is_panic() {
                    resume_unwind(error.into_panic());
                }
            }
        }
        let panic = lock(&self.outcome.panic).take();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
    }
}

/// Why a [`TaskGroup`] cancelled its own context: the cause its
/// [`context`](TaskGroup::context) reports once a task has stopped the group,
/// as Go's `context.Cause` reports errgroup's error. Tasks watching the
/// context can tell a sibling's failure from a parent's cancellation.
///
/// ```
/// use tokio_conc::pool::GroupStopped;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut group = TaskGroup::new(&TaskContext::background());
/// let ctx = group.context().clone();
/// group.spawn(async { Err("disk full") });
/// assert_eq!(group.wait().await, Err("disk full"));
///
/// let err = ctx.err().unwrap();
/// assert_eq!(err.to_string(), "context cancelled: a task in the group failed");
/// let cause = err.cause().unwrap().downcast_ref::<GroupStopped>();
/// assert_eq!(cause, Some(&GroupStopped::TaskFailed));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupStopped {
    /// A task returned `Err` (not with [`keep_going`](TaskGroup::keep_going)).
    TaskFailed,
    /// A task panicked.
    TaskPanicked,
}

impl fmt::Display for GroupStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupStopped::TaskFailed => "a task in the group failed",
            GroupStopped::TaskPanicked => "a task in the group panicked",
        })
    }
}

impl std::error::Error for GroupStopped {}

/// Joins `limit`'s queue now, at spawn, and waits for a slot later in the
/// task. The semaphore serves waiters in the order they first asked, and the
/// runtime may first poll new tasks in another order (a task spawned from a
/// worker thread runs before the earlier ones, from the thread's LIFO slot;
/// other threads steal), so asking from the task would lose spawn order.
fn queue_for_slot(limit: Arc<Semaphore>) -> impl Future<Output = OwnedSemaphorePermit> + Send {
    let mut acquire = Box::pin(limit.acquire_owned());
    // Polling queues the request; the task's own first poll replaces the
    // no-op waker before it can be missed (the semaphore only hands the slot
    // over, and the task, being new, is polled anyway).
    let first = acquire
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    async move {
        let acquired = match first {
            Poll::Ready(acquired) => acquired,
            Poll::Pending => acquire.await,
        };
        acquired.expect("the limit is never closed")
    }
}

impl<E> Drop for TaskGroup<E> {
    fn drop(&mut self) {
        // The JoinSet aborts the tasks; cancelling tells anyone else watching
        // the context that the group is gone.
        self.ctx.cancel();
    }
}

impl<E> fmt::Debug for TaskGroup<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("tasks", &self.tasks.len())
            .field("fail_fast", &self.fail_fast)
            .field("context", &self.ctx)
            .finish_non_exhaustive()
    }
}
