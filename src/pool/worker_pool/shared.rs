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

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::job::{Job, JobError, JobHandle};
use super::reject::{RejectReason, Rejected};
use super::stats::Counters;
use crate::context::TaskContext;

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
    /// Workers alive, or spawned and about to be.
    workers: usize,
    /// The worker count asked for; workers above it leave after their job.
    target: usize,
    next_index: usize,
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
                jobs: VecDeque::with_capacity(buffer),
                closed: false,
                workers: 0,
                target: 0,
                next_index: 0,
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

    /// A place in the queue, now if there is one (`Err(Full)` from `try_seat`).
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

    /// Abort: running jobs are dropped by their workers, queued ones here.
    pub(super) fn abort(&self) {
        // Set before anything is dropped, so every handle reads the right reason.
        self.aborted.store(true, Relaxed);
        self.ctx.cancel();
        self.stop();
    }

    /// Closes and empties the queue once the pool's context is cancelled.
    pub(super) fn stop(&self) {
        let dropped = {
            let mut queue = self.queue();
            queue.closed = true;
            std::mem::take(&mut queue.jobs)
        };
        self.seats.close();
        self.tracker.close();
        self.idle.notify_waiters();
        self.counters.waiting.fetch_sub(dropped.len(), Relaxed);
        // Outside the lock: dropping a job runs its future's destructors,
        // which may call back into the pool.
        drop(dropped);
    }

    /// Sets the worker count, starting workers or letting the extra ones leave
    /// after their current job. A stopped pool starts none.
    pub(super) fn resize(self: &Arc<Self>, count: usize) {
        let (first, added) = {
            let mut queue = self.queue();
            queue.target = count;
            if self.ctx.is_cancelled() {
                return;
            }
            let added = count.saturating_sub(queue.workers);
            let first = queue.next_index;
            queue.workers += added;
            queue.next_index += added;
            (first, added)
        };
        for index in first..first + added {
            self.counters.workers.fetch_add(1, Relaxed);
            let gone = WorkerGone(Arc::clone(&self.counters));
            let span = tracing::info_span!(parent: &self.span, "worker", pool = %self.name, worker = index);
            let work = self.ctx.scope(Arc::clone(self).work(gone)).instrument(span);
            self.tracker.spawn_on(work, &self.runtime);
        }
        // Idle workers above the new count wake up and leave.
        self.idle.notify_waiters();
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
            let job = {
                // Registered before looking at the queue, so a job submitted
                // between the look and the wait still wakes this worker.
                let wakeup = self.idle.notified();
                tokio::pin!(wakeup);
                wakeup.as_mut().enable();
                match self.next() {
                    Next::Run(job) => job,
                    Next::Leave => return,
                    Next::Wait => {
                        tokio::select! {
                            biased;
                            () = self.ctx.cancelled() => return self.stop(),
                            () = wakeup => continue,
                        }
                    }
                }
                // The registration ends here: a busy worker must not be the
                // one a new job's wake-up goes to while idle ones sleep.
            };
            // Frees the job's place in the queue for the next submitter.
            drop(job.seat);
            if self.waiting_submitters.load(Relaxed) > 0 {
                // That woke a submitter into this thread's LIFO slot, which no
                // other thread can steal from: let it queue its job before
                // this one holds the thread, or the other workers run dry.
                tokio::task::yield_now().await;
            }
            tokio::select! {
                biased;
                () = self.ctx.cancelled() => return self.stop(),
                () = job.work => {}
            }
            // A worker with a long queue of quick jobs would otherwise never
            // give its thread back.
            tokio::task::coop::consume_budget().await;
        }
    }
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
