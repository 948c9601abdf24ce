//! [`WorkerPool`]: a long-lived pool of workers that services submit jobs to.

mod job;
mod reject;
mod shared;
mod stats;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::TryAcquireError;

pub use job::{JobError, JobHandle};
pub use reject::{RejectReason, Rejected};
pub use stats::PoolStats;

use self::shared::Shared;
use super::Workers;
use crate::context::{ContextError, TaskContext};
use crate::internal::runtime_handle;

/// A fixed set of worker tasks running submitted jobs — Go's jobs channel and
/// N goroutines, as a value a service keeps for its whole life.
///
/// * [`submit`](Self::submit) waits for room in the bounded queue and returns a
///   [`JobHandle`] to the job's output; [`try_submit`](Self::try_submit) refuses
///   at once when the queue is full (load shedding). A refused job comes back in
///   the [`Rejected`] error.
/// * [`close`](Self::close) stops intake; [`join`](Self::join) waits until every
///   accepted job has run (a graceful drain). [`abort`](Self::abort) stops at
///   once: running and queued jobs are dropped and their handles say so.
/// * [`resize`](Self::resize) changes the number of workers while it runs;
///   [`stats`](Self::stats) counts what happened.
///
/// Jobs run on spawned Tokio tasks, so on a multi-thread runtime CPU-bound jobs
/// run on every core. Each worker runs its jobs with the pool's context as
/// [`TaskContext::current`] and inside a `worker` span recording the pool's name
/// and the worker's index (counting from 0 in start order), nested in the
/// context's [span](TaskContext::span).
///
/// A panic in a job is caught: the worker goes on with the next job, and the
/// job's handle gets a [`JobError`] carrying the payload (counted in
/// [`PoolStats::panicked`]).
///
/// Each job costs two small allocations (the job and its result slot) and a
/// hand-off of a few hundred nanoseconds — about what a hand-written pool of
/// one channel per worker costs — so the pool suits jobs of a microsecond and
/// up; for a stream of many tiny items, prefer the stream operators
/// (`par_map` and friends), which batch their hand-offs.
///
/// The pool's context is a [child](TaskContext::child) of the one given with
/// [`Workers::context`], else of the one current where the pool is built, else
/// a fresh root (the crate's [context rule](crate#contexts-one-rule)): cancelling that context stops the
/// pool like [`abort`](Self::abort) does, except that handles report
/// [`JobError::is_cancelled`] with the context's reason.
///
/// # No task outlives the pool
///
/// The pool is cheap to clone; clones are the same pool. When the last clone is
/// dropped **without [`close`](Self::close)**, the pool is aborted: its workers
/// end and its queued jobs are dropped (their handles report
/// [`JobError::is_aborted`]). After `close`, dropping the pool lets the workers
/// finish the queue in the background and then end, since the caller asked for
/// that work to be done; await [`join`](Self::join) to know when. Besides its
/// workers the pool runs one small task watching its context; it ends with
/// them.
///
/// # Panics
///
/// [`new`](Self::new) panics outside a Tokio runtime, or if the worker count or
/// buffer is 0 (see [`Workers`]).
///
/// ```
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let pool = WorkerPool::new(Workers::new(4).buffer(64).name("thumbnails"));
/// let mut handles = Vec::new();
/// for image in 0..10_u64 {
///     let handle = pool.submit(async move { image * image }).await.expect("pool is open");
///     handles.push(handle);
/// }
/// pool.close();
/// pool.join().await;
///
/// let mut total = 0;
/// for handle in handles {
///     total += handle.await.expect("no job panicked");
/// }
/// assert_eq!(total, 285);
/// assert_eq!(pool.stats().completed, 10);
/// # }
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
    /// Shared by the clones only (never by workers or handles): its drop is
    /// the drop of the last clone.
    _last_clone: Arc<LastClone>,
}

struct LastClone(Arc<Shared>);

impl Drop for LastClone {
    fn drop(&mut self) {
        if !self.0.is_closed() {
            self.0.abort();
        }
    }
}

impl WorkerPool {
    /// Starts a pool: `workers.count()` workers and a queue holding up to
    /// `workers.buffer_size()` jobs waiting to start. A `usize` gives that many
    /// workers with the default buffer ([`Workers::buffer_size`]: 256, or twice the count).
    ///
    /// The pool's [`context`](Self::context) is a child of the one given with
    /// [`Workers::context`], else of the one current here, else a new root
    /// (the crate's [context rule](crate#contexts-one-rule)): cancelling that
    /// context stops the pool as [`abort`](Self::abort) does.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, and (through [`Workers`]) for 0 workers or a
    /// 0 buffer.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let pool = WorkerPool::new(Workers::new(3).buffer(10).context(&ctx).name("mail"));
    /// assert_eq!(pool.stats().workers, 3);
    /// # }
    /// ```
    pub fn new(workers: impl Into<Workers>) -> Self {
        let workers = workers.into();
        let runtime = runtime_handle("WorkerPool::new");
        let ctx = crate::internal::ambient_context(workers.task_context())
            .map_or_else(TaskContext::background, |ctx| ctx.child());
        let shared = Shared::new(
            ctx,
            workers.buffer_size(),
            runtime,
            workers.label().to_owned(),
        );
        shared.start(workers.count());
        WorkerPool {
            _last_clone: Arc::new(LastClone(Arc::clone(&shared))),
            shared,
        }
    }

    /// Queues `job`, waiting for room if the queue is full, and returns a
    /// handle to its output.
    ///
    /// A pool that is closed or stopped refuses the job at once
    /// ([`RejectReason::Closed`], or [`RejectReason::Cancelled`] with the pool
    /// context's reason), also while waiting. While it waits for room, it also
    /// gives up when the **caller's** [`TaskContext::current`] is cancelled
    /// ([`RejectReason::Cancelled`] with the caller's reason): a request that
    /// was given up on should not wait for a worker. When there is room, the
    /// job is queued at once without consulting the caller's context — as in
    /// Go, where a `select` on a free channel send and `ctx.Done()` may take
    /// either. A refused job comes back in [`Rejected`]. Cancel-safe:
    /// dropping the returned future before it completes queues nothing.
    ///
    /// Room for quick jobs is given back in chunks: a submitter waiting for
    /// room is let in once a quarter of the buffer (at most 64 places) has
    /// freed, or as soon as the queue runs dry, not after every job that
    /// starts — on quick jobs a wake-up per job would cost more than the job.
    /// Slow jobs never hold it up: a place freed by a job that then waits
    /// (returns `Pending`), or by a worker whose jobs take 50 µs or more
    /// each, is given back at once, so the submitter waits only for the next
    /// job to start. Workers are not kept waiting for it (the queue still
    /// holds the jobs ahead), and [`try_submit`](Self::try_submit) sees every
    /// freed place at once. Buffers of up to 7 places are given back place by
    /// place.
    ///
    /// A job that submits to its own pool and waits for room can deadlock once
    /// every worker does the same, as in Go; use [`try_submit`](Self::try_submit)
    /// there.
    ///
    /// ```
    /// use tokio_conc::pool::RejectReason;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(2);
    /// let handle = pool.submit(async { "resized" }).await.unwrap();
    /// assert_eq!(handle.await.unwrap(), "resized");
    ///
    /// // A caller whose request was cancelled is not kept waiting.
    /// let full = WorkerPool::new(Workers::new(1).buffer(1));
    /// let _blocked = full.submit(std::future::pending::<()>()).await.unwrap();
    /// let request = TaskContext::background();
    /// request.cancel();
    /// let rejected = request.scope(full.submit(async {})).await.unwrap_err();
    /// assert_eq!(rejected.reason(), &RejectReason::Cancelled(ContextError::Cancelled));
    /// # }
    /// ```
    pub async fn submit<F>(&self, job: F) -> Result<JobHandle<F::Output>, Rejected<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = &self.shared;
        if shared.ctx.is_cancelled() {
            return Err(shared.reject(shared.why_closed(), job));
        }
        let seat = match shared.try_seat() {
            Ok(seat) => seat,
            Err(TryAcquireError::Closed) => return Err(shared.reject(shared.why_closed(), job)),
            Err(TryAcquireError::NoPermits) => {
                let caller = TaskContext::current();
                let caller_gave_up = async {
                    match &caller {
                        Some(ctx) => ctx.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = caller_gave_up => {
                        let reason = caller.as_ref().and_then(TaskContext::err).unwrap_or(ContextError::Cancelled);
                        return Err(shared.reject(RejectReason::Cancelled(reason), job));
                    }
                    seat = shared.take_seat() => match seat {
                        Some(seat) => seat,
                        None => return Err(shared.reject(shared.why_closed(), job)),
                    },
                }
            }
        };
        shared.enqueue(job, seat)
    }

    /// Queues `job` if there is room now; otherwise gives it back at once in
    /// [`Rejected`] ([`RejectReason::Full`], counted in
    /// [`PoolStats::rejected`]). Never waits, so it does not consult the
    /// caller's context.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(Workers::new(1).buffer(2));
    /// let accepted: Vec<_> = (0..5).filter_map(|i| pool.try_submit(async move { i }).ok()).collect();
    /// assert_eq!(accepted.len(), 2, "the worker has not run yet: two fit in the queue");
    /// assert_eq!(pool.stats().rejected, 3);
    /// # }
    /// ```
    pub fn try_submit<F>(&self, job: F) -> Result<JobHandle<F::Output>, Rejected<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = &self.shared;
        if shared.ctx.is_cancelled() {
            return Err(shared.reject(shared.why_closed(), job));
        }
        match shared.try_seat() {
            Ok(seat) => shared.enqueue(job, seat),
            Err(TryAcquireError::NoPermits) => Err(shared.reject(RejectReason::Full, job)),
            Err(TryAcquireError::Closed) => Err(shared.reject(shared.why_closed(), job)),
        }
    }

    /// Stops intake: later submissions (and those waiting for room) are
    /// rejected with [`RejectReason::Closed`]. Accepted jobs still run; the
    /// workers end when the queue is empty. Idempotent.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let handle = pool.submit(async { 5 }).await.unwrap();
    /// pool.close();
    /// assert!(pool.is_closed());
    /// assert_eq!(handle.await.unwrap(), 5, "accepted work still runs");
    /// # }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Closes the pool (if it is not yet) and waits until every worker has
    /// ended: after a [`close`](Self::close), when all accepted jobs have run;
    /// after an [`abort`](Self::abort) or a cancelled context, as soon as the
    /// workers have dropped their jobs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let done = Arc::new(AtomicUsize::new(0));
    /// let pool = WorkerPool::new(3);
    /// for _ in 0..6 {
    ///     let done = done.clone();
    ///     let _ = pool.submit(async move { done.fetch_add(1, Ordering::SeqCst); }).await.unwrap();
    /// }
    /// pool.join().await;
    /// assert_eq!(done.load(Ordering::SeqCst), 6);
    /// assert_eq!(pool.stats().workers, 0);
    /// # }
    /// ```
    pub async fn join(&self) {
        self.shared.close();
        self.shared.tracker.wait().await;
    }

    /// Stops now: the pool's context is cancelled, running jobs are dropped at
    /// their next `.await`, queued jobs are dropped here, and every handle of an
    /// unfinished job resolves to an error for which
    /// [`JobError::is_aborted`] holds. Later submissions are rejected with
    /// [`RejectReason::Closed`]. Idempotent. A pool its context has already
    /// stopped keeps reporting that context's reason.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let stuck = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// pool.abort();
    /// assert!(stuck.await.unwrap_err().is_aborted());
    /// pool.join().await;
    /// # }
    /// ```
    pub fn abort(&self) {
        self.shared.abort();
    }

    /// Sets the number of workers. Growing starts the new workers at once;
    /// shrinking lets idle workers leave at once and busy ones after their
    /// current job. The queue's capacity does not change. A stopped pool
    /// starts no workers.
    ///
    /// # Panics
    ///
    /// If `workers` is 0.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(2);
    /// pool.resize(5);
    /// assert_eq!(pool.stats().workers, 5);
    /// # }
    /// ```
    pub fn resize(&self, workers: usize) {
        assert!(workers > 0, "`workers` must be at least 1, got 0");
        self.shared.resize(workers);
    }

    /// A snapshot of the pool's counters.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// assert_eq!(pool.stats().submitted, 0);
    /// # }
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// Whether the pool takes no more jobs: closed, aborted, or stopped by its
    /// context.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// assert!(!pool.is_closed());
    /// pool.abort();
    /// assert!(pool.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed() || self.shared.ctx.is_cancelled()
    }

    /// The pool's context: current inside every job, cancelled by
    /// [`abort`](Self::abort) and by the cancellation of the context the pool
    /// was built with.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let ctx = pool.context().clone();
    /// pool.abort();
    /// assert!(ctx.is_cancelled());
    /// # }
    /// ```
    pub fn context(&self) -> &TaskContext {
        &self.shared.ctx
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("stats", &self.stats())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
