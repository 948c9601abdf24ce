//! The state a [`WorkerPool`](super::WorkerPool) shares with its workers, and
//! the worker loop.
//!
//! The hand-off is a plain queue under a `std` mutex (never held across an
//! `.await`) with a `Notify` for idle workers. A worker that takes a job wakes
//! no other worker: only submitting (and closing, resizing, stopping) wakes
//! idle workers. A queue shared through an async lock or a channel read by N
//! workers would make each worker wake the next into its own thread's LIFO
//! slot, where no other thread can steal it — and CPU-bound jobs would then run
//! one at a time however many threads the runtime has.
//!
//! Stopping costs nothing per job: one watcher task waits for the pool's
//! context and then aborts the workers, instead of every job racing the
//! context's cancellation (a shared lock in the token) in a `select!`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::AbortHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::job::{Job, JobError, JobHandle};
use super::reject::{RejectReason, Rejected};
use super::stats::Counters;
use crate::context::TaskContext;

/// Places in the queue allocated up front; more are allocated as jobs fill them.
const INITIAL_QUEUE_CAPACITY: usize = 1024;

pub(super) struct Shared {
    pub(super) ctx: TaskContext,
    pub(super) counters: Arc<Counters>,
    /// One permit per free place in the queue; a job gives its permit back
    /// when a worker takes it.
    seats: Arc<Semaphore>,
    /// Submitters parked until a seat frees (see [`Shared::take_seat`]).
    waiting_submitters: AtomicUsize,
    pub(super) tracker: TaskTracker,
    queue: Mutex<Queue>,
    /// Wakes idle workers: one per submitted job, all on close/resize/stop.
    idle: Notify,
    aborted: AtomicBool,
    runtime: Handle,
    name: String,
    span: tracing::Span,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// No job is accepted once set; workers leave when the queue is empty.
    closed: bool,
    /// Set by `stop`: no worker may start after it.
    stopped: bool,
    /// Workers alive, or spawned and about to be.
    workers: usize,
    /// The worker count asked for; workers above it leave after their job.
    target: usize,
    next_index: usize,
    /// To stop every worker at once, even one in the middle of a job.
    handles: Vec<AbortHandle>,
}

enum Next {
    Run(Job),
    Wait,
    Leave,
}

impl Shared {
    pub(super) fn new(
        ctx: TaskContext,
        buffer: usize,
        runtime: Handle,
        name: String,
    ) -> Arc<Shared> {
        let span = ctx.span();
        Arc::new(Shared {
            ctx,
            counters: Arc::default(),
            seats: Arc::new(Semaphore::new(buffer)),
            waiting_submitters: AtomicUsize::new(0),
            tracker: TaskTracker::new(),
            queue: Mutex::new(Queue {
                // Not the whole buffer: a huge one (a queue meant to be
                // unbounded) would be allocated up front, or abort the process.
                jobs: VecDeque::with_capacity(buffer.min(INITIAL_QUEUE_CAPACITY)),
                closed: false,
                stopped: false,
                workers: 0,
                target: 0,
                next_index: 0,
                handles: Vec::new(),
            }),
            idle: Notify::new(),
            aborted: AtomicBool::new(false),
            runtime,
            name,
            span,
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The lock guards only plain bookkeeping that no panic leaves half done.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.queue().closed
    }

    /// A place in the queue, if one is free now.
    pub(super) fn try_seat(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        Arc::clone(&self.seats).try_acquire_owned()
    }

    /// A place in the queue, waiting for one; `None` once the pool is closed.
    /// Cancel-safe.
    pub(super) async fn take_seat(&self) -> Option<OwnedSemaphorePermit> {
        match self.try_seat() {
            Ok(seat) => return Some(seat),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        self.waiting_submitters.fetch_add(1, Relaxed);
        let _counted = WaitingSubmitter(self);
        Arc::clone(&self.seats).acquire_owned().await.ok()
    }

    /// Queues `fut` on the seat it holds, or gives it back if the pool closed
    /// meanwhile. Closing takes the same lock, so no job slips in behind the
    /// last worker.
    pub(super) fn enqueue<F>(
        self: &Arc<Self>,
        fut: F,
        seat: OwnedSemaphorePermit,
    ) -> Result<JobHandle<F::Output>, Rejected<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut queue = self.queue();
        if queue.closed {
            drop(queue);
            return Err(self.reject(self.why_closed(), fut));
        }
        let (job, rx) = Job::new(fut, seat, Arc::clone(&self.counters));
        queue.jobs.push_back(job);
        self.counters.waiting.fetch_add(1, Relaxed);
        self.counters.submitted.fetch_add(1, Relaxed);
        drop(queue);
        self.idle.notify_one();
        Ok(JobHandle::new(rx, Arc::clone(self)))
    }

    pub(super) fn reject<F>(&self, reason: RejectReason, fut: F) -> Rejected<F> {
        self.counters.rejected.fetch_add(1, Relaxed);
        Rejected::new(reason, fut)
    }

    /// Why a closed pool refuses work: stopped by its context, or closed.
    pub(super) fn why_closed(&self) -> RejectReason {
        match self.ctx.err() {
            Some(reason) if !self.aborted.load(Relaxed) => RejectReason::Cancelled(reason),
            _ => RejectReason::Closed,
        }
    }

    /// What a job dropped unfinished tells its handle.
    pub(super) fn why_jobs_were_dropped(&self) -> JobError {
        match self.ctx.err() {
            Some(reason) if !self.aborted.load(Relaxed) => JobError::cancelled(reason),
            _ => JobError::aborted(),
        }
    }

    /// Graceful: no new jobs; the workers finish the queue, then leave.
    pub(super) fn close(&self) {
        self.queue().closed = true;
        self.seats.close();
        self.tracker.close();
        self.idle.notify_waiters();
    }

    /// Abort: the workers are aborted with their running jobs, and queued
    /// jobs are dropped, by `stop`.
    pub(super) fn abort(&self) {
        // Handles read the reason when polled: a pool its context has already
        // stopped keeps that reason, since that is what dropped its jobs.
        if !self.ctx.is_cancelled() {
            // Set before anything is dropped, so every handle reads the right reason.
            self.aborted.store(true, Relaxed);
            self.ctx.cancel();
        }
        self.stop();
    }

    /// Once the pool's context is cancelled: closes and empties the queue and
    /// aborts the workers (a running job is dropped at its next `.await`).
    pub(super) fn stop(&self) {
        let (dropped, workers) = {
            let mut queue = self.queue();
            queue.closed = true;
            queue.stopped = true;
            (
                std::mem::take(&mut queue.jobs),
                std::mem::take(&mut queue.handles),
            )
        };
        self.seats.close();
        self.tracker.close();
        for worker in workers {
            worker.abort();
        }
        self.counters.waiting.fetch_sub(dropped.len(), Relaxed);
        // Outside the lock: dropping a job runs its future's destructors,
        // which may call back into the pool.
        drop(dropped);
    }

    /// Starts `count` workers and the watcher that stops them all when the
    /// pool's context is cancelled.
    pub(super) fn start(self: &Arc<Self>, count: usize) {
        self.resize(count);
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::select! {
                () = shared.ctx.cancelled() => shared.stop(),
                // Closed and drained: nothing left to stop.
                () = shared.tracker.wait() => {}
            }
        });
    }

    /// Sets the worker count, starting workers or letting the extra ones leave
    /// after their current job. A stopped pool starts none.
    pub(super) fn resize(self: &Arc<Self>, count: usize) {
        let mut queue = self.queue();
        queue.target = count;
        if !queue.stopped {
            queue.handles.retain(|worker| !worker.is_finished());
            while queue.workers < count {
                let index = queue.next_index;
                queue.next_index += 1;
                queue.workers += 1;
                // Spawned under the lock, so `stop` cannot miss a worker.
                let worker = self.spawn_worker(index);
                queue.handles.push(worker);
            }
        }
        drop(queue);
        // Idle workers above the new count wake up and leave.
        self.idle.notify_waiters();
    }

    fn spawn_worker(self: &Arc<Self>, index: usize) -> AbortHandle {
        self.counters.workers.fetch_add(1, Relaxed);
        let gone = WorkerGone(Arc::clone(&self.counters));
        let span =
            tracing::info_span!(parent: &self.span, "worker", pool = %self.name, worker = index);
        let work = self.ctx.scope(Arc::clone(self).work(gone)).instrument(span);
        self.tracker.spawn_on(work, &self.runtime).abort_handle()
    }

    fn next(&self) -> Next {
        let mut queue = self.queue();
        if queue.workers > queue.target {
            queue.workers -= 1;
            return Next::Leave;
        }
        if let Some(job) = queue.jobs.pop_front() {
            self.counters.waiting.fetch_sub(1, Relaxed);
            return Next::Run(job);
        }
        if queue.closed {
            queue.workers -= 1;
            return Next::Leave;
        }
        Next::Wait
    }

    async fn work(self: Arc<Self>, _gone: WorkerGone) {
        loop {
            let job = match self.next() {
                Next::Run(job) => job,
                Next::Leave => return,
                Next::Wait => {
                    // Registered before looking again, so a job submitted
                    // between the look and the wait still wakes this worker.
                    // Only an idle worker registers: a busy one must never be
                    // the one a new job's wake-up goes to while idle ones
                    // sleep (and registering costs a lock per job).
                    let wakeup = self.idle.notified();
                    tokio::pin!(wakeup);
                    wakeup.as_mut().enable();
                    match self.next() {
                        Next::Run(job) => job,
                        Next::Leave => return,
                        Next::Wait => {
                            wakeup.await;
                            continue;
                        }
                    }
                }
            };
            // Frees the job's place in the queue for the next submitter.
            drop(job.seat);
            if self.waiting_submitters.load(Relaxed) > 0 {
                // That woke a submitter into this thread's LIFO slot, which no
                // other thread can steal from: a CPU-bound job would hold it
                // there while the queue runs dry and the other workers idle.
                // Stepping aside lets it refill the queue first. (Measured
                // with 2 threads, 2 workers, 200 µs jobs and a 4-job queue:
                // two jobs ran at once 80-90% of the time with this, 20-70%
                // without; it costs trivial jobs about 2x.)
                let_the_lifo_slot_run().await;
            }
            job.work.await;
            // A worker with a long queue of quick jobs would otherwise never
            // give its thread back.
            tokio::task::coop::consume_budget().await;
        }
    }
}

/// Returns `Pending` once, having woken itself. Tokio then runs the task in
/// this thread's LIFO slot next, and puts this one at the back of the local
/// queue, where an idle thread can steal it. (`yield_now` instead defers
/// this task until the runtime next polls its drivers, which measured slower.)
async fn let_the_lifo_slot_run() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// Counts a submitter out of [`Shared::take_seat`] however it leaves.
struct WaitingSubmitter<'a>(&'a Shared);

impl Drop for WaitingSubmitter<'_> {
    fn drop(&mut self) {
        self.0.waiting_submitters.fetch_sub(1, Relaxed);
    }
}

/// Counts a worker out however it ends (left, stopped, or dropped by the
/// runtime, even before it first ran).
struct WorkerGone(Arc<Counters>);

impl Drop for WorkerGone {
    fn drop(&mut self) {
        self.0.workers.fetch_sub(1, Relaxed);
    }
}
