//! The state a [`WorkerPool`](super::WorkerPool) shares with its workers, and
//! the worker loop.
//!
//! The hand-off is a plain queue under a `std` mutex (never held across an
//! `.await`). Idle workers park, each on its own [`Parker`], in a list under
//! the same mutex. Invariants, all kept under the queue's lock:
//!
//! * **Searching.** `searching` counts the workers that are awake and will
//!   look at the queue before they park or run a job: a worker just started,
//!   or just unparked (counted by whoever unparked it). A worker that takes a
//!   job or parks stops searching in the same critical section in which it
//!   looked at the queue, so a job pushed while `searching > 0` is always seen.
//! * **Wake only when nobody will look.** Pushing a job unparks a worker only
//!   when no worker is searching (or when jobs pile up behind the searching
//!   ones: a woken worker may sit in the LIFO slot of a thread whose task does
//!   not yield); a worker that takes a job and leaves more behind unparks one
//!   more when no worker is searching. With quick jobs workers keep finding
//!   work and nobody is woken per job; with slow jobs every idle worker is
//!   woken while jobs wait.
//! * **A worker that wakes anybody steps aside before its job.** A wake-up
//!   from a runtime thread lands in that thread's LIFO slot, which no other
//!   thread can steal from: a CPU-bound job run right after it would hold the
//!   woken task (a worker, or a submitter waiting for room) there while other
//!   threads idle. Yielding once lets the woken task run and puts this worker
//!   where an idle thread can steal it. Submitters are not workers and never
//!   step aside.
//! * **Places come back in chunks — of quick jobs.** `seats` holds one permit
//!   per free place. A submitter takes one and forgets it; a worker taking a
//!   job counts its place in `freed`, and gives the counted places back to
//!   `seats` at once when they reach a chunk of the buffer, or, while a
//!   submitter waits, when the queue runs dry or this worker's jobs are slow
//!   (below). A submitter that finds no permit gives the counted places back
//!   itself before it waits or refuses (`try_submit`), so no place is ever
//!   held by nobody. So a submitter waiting for room is woken once per chunk
//!   of quick jobs, not once per job.
//! * **Counted places never wait on a slow job.** While a submitter waits,
//!   a place a worker counted and kept is given back (with every other
//!   counted place) before that worker lets its thread go: when the job it
//!   took returns `Pending` on a poll for the first time (the job waits on
//!   I/O or a timer, for as long as it likes). And a worker whose recent
//!   jobs each ran [`SLOW_JOB`] or longer (CPU-bound ones that never return
//!   `Pending`) gives its place back as it takes a job, not after the job.
//!   How long jobs run is sampled, not timed: a worker reads the clock after
//!   1, 2, 4, … up to [`MAX_SAMPLE_GAP`] jobs, and after every job once
//!   they are slow ([`Pace`]), so quick jobs pay for a clock read once in
//!   many jobs. A submitter waiting for room thus waits for the next job to
//!   start, not for a chunk of slow jobs to start.
//!
//! Stopping costs nothing per job: one watcher task waits for the pool's
//! context and then aborts the workers, instead of every job racing the
//! context's cancellation (a shared lock in the token) in a `select!`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use tokio::task::AbortHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::job::{Job, JobError, JobHandle, Prepared};
use super::reject::{RejectReason, Rejected};
use super::stats::{Counters, PoolStats, Tally};
use crate::context::TaskContext;

/// Places in the queue allocated up front; more are allocated as jobs fill them.
const INITIAL_QUEUE_CAPACITY: usize = 1024;

/// Jobs queued per searching worker before a submitter wakes one more: a
/// searching worker stuck in the LIFO slot of a thread whose task does not
/// yield must not hold up every job behind it.
const JOBS_PER_SEARCHING_WORKER: usize = 16;

/// The most places a worker counts before giving them back to submitters.
const MAX_FREED_CHUNK: usize = 64;

/// A job this long or longer is slow: giving its place back to a waiting
/// submitter at once (a wake-up, a few hundred nanoseconds) costs it almost
/// nothing, and holding the place for a chunk of such jobs costs the
/// submitter a chunk's worth of them.
const SLOW_JOB: Duration = Duration::from_micros(50);

/// The most jobs a worker runs between two reads of the clock while its jobs
/// are quick (see [`Pace`]).
const MAX_SAMPLE_GAP: u32 = 16;

pub(super) struct Shared {
    pub(super) ctx: TaskContext,
    pub(super) counters: Arc<Counters>,
    /// One permit per free place in the queue, less the places counted in
    /// [`Queue::freed`].
    seats: Semaphore,
    /// Places given back to `seats` together (see the module docs).
    freed_chunk: usize,
    pub(super) tracker: TaskTracker,
    queue: Mutex<Queue>,
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
    /// Workers awake that will look at the queue before they park or run a job.
    searching: usize,
    /// Idle workers, each waiting on its own parker.
    parked: Vec<Arc<Parker>>,
    /// Places freed by jobs taken, not yet given back to `seats`.
    freed: usize,
    /// Submitters waiting for a place (see [`Shared::take_seat`]).
    waiting_submitters: usize,
    /// Jobs accepted so far.
    submitted: u64,
}

/// What a worker does next, and whom it must wake first (outside the lock).
enum Next {
    Run(Job, Wake),
    Park,
    Leave,
}

/// The wake-ups a worker owes after taking a job.
#[derive(Default)]
struct Wake {
    /// A parked worker to unpark: jobs are left and nobody is searching.
    worker: Option<Arc<Parker>>,
    /// Places to give back to `seats`, and whether a submitter waits for them.
    places: usize,
    submitter_waits: bool,
}

impl Wake {
    fn wakes_anybody(&self) -> bool {
        self.worker.is_some() || (self.places > 0 && self.submitter_waits)
    }

    /// A submitter waits and the places counted stay counted: they must go
    /// back before the job lets the thread go.
    fn holds_places(&self) -> bool {
        self.submitter_waits && self.places == 0
    }
}

/// How long one worker's jobs run, sampled: the clock is read when a run of
/// jobs starts (the worker's first, or the first after it parked) and then
/// every 1, 2, 4, … up to [`MAX_SAMPLE_GAP`] jobs while they are quick, after
/// every job once they are slow. The time between two reads, over the jobs
/// run between them, is the jobs' pace (the worker's own few steps between
/// jobs included).
struct Pace {
    /// The last read of the clock; `None` while no job has run since the
    /// worker started or last parked.
    since: Option<Instant>,
    /// Jobs ended since `since`.
    jobs: u32,
    /// Jobs to end before the next read.
    every: u32,
    /// The last sample found the jobs slow ([`SLOW_JOB`] or longer each).
    slow: bool,
}

impl Pace {
    fn new() -> Self {
        Pace {
            since: None,
            jobs: 0,
            every: 1,
            slow: false,
        }
    }

    fn job_starts(&mut self) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            self.jobs = 0;
        }
    }

    fn job_ended(&mut self) {
        self.jobs += 1;
        if self.jobs < self.every {
            return;
        }
        let now = Instant::now();
        if let Some(since) = self.since.replace(now) {
            self.slow = now.saturating_duration_since(since) >= SLOW_JOB * self.jobs;
        }
        self.every = if self.slow {
            1
        } else {
            (self.every * 2).min(MAX_SAMPLE_GAP)
        };
        self.jobs = 0;
    }

    /// Idle time is no job's: the next run of jobs is timed from its first
    /// job. The sampling gap is kept, so a worker that parks often (quick
    /// jobs that drain the queue) reads the clock once per wake-up, not
    /// after 1, 2, 4, … jobs each time.
    fn parks(&mut self) {
        self.since = None;
    }
}

/// Where one idle worker waits until it is unparked. Each park is ended by
/// exactly one unpark: whoever takes the parker out of [`Queue::parked`].
#[derive(Default)]
struct Parker {
    unparked: AtomicBool,
    waker: AtomicWaker,
}

impl Parker {
    fn unpark(&self) {
        self.unparked.store(true, Release);
        self.waker.wake();
    }

    async fn park(&self) {
        std::future::poll_fn(|cx| {
            if self.unparked.swap(false, Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.unparked.swap(false, Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
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
            seats: Semaphore::new(buffer),
            freed_chunk: (buffer / 4).clamp(1, MAX_FREED_CHUNK),
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
                searching: 0,
                parked: Vec::new(),
                freed: 0,
                waiting_submitters: 0,
                submitted: 0,
            }),
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

    /// A snapshot of the counters; the queue's own under its lock.
    pub(super) fn stats(&self) -> PoolStats {
        let (submitted, waiting) = {
            let queue = self.queue();
            (queue.submitted, queue.jobs.len())
        };
        self.counters.snapshot(submitted, waiting)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.queue().closed
    }

    /// A place in the queue, if one is free now (counting the places workers
    /// have freed and not yet given back).
    pub(super) fn try_seat(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        match self.seats.try_acquire() {
            Err(TryAcquireError::NoPermits) if self.give_back_freed_places() > 0 => {
                self.seats.try_acquire()
            }
            taken => taken,
        }
    }

    /// Gives the places workers counted back to `seats`; returns how many.
    pub(super) fn give_back_freed_places(&self) -> usize {
        let places = std::mem::take(&mut self.queue().freed);
        self.seats.add_permits(places);
        places
    }

    /// A place in the queue, waiting for one; `None` once the pool is closed.
    /// Cancel-safe.
    pub(super) async fn take_seat(&self) -> Option<SemaphorePermit<'_>> {
        // Counted before the freed places are given back, under the lock a
        // worker counts a place under: from then on, a worker that empties
        // the queue gives its places back at once.
        let places = {
            let mut queue = self.queue();
            queue.waiting_submitters += 1;
            std::mem::take(&mut queue.freed)
        };
        let _counted = WaitingSubmitter(self);
        self.seats.add_permits(places);
        self.seats.acquire().await.ok()
    }

    /// Queues `fut` on the place it holds, or gives it back if the pool closed
    /// meanwhile. Closing takes the same lock, so no job slips in behind the
    /// last worker.
    pub(super) fn enqueue<F>(
        self: &Arc<Self>,
        fut: F,
        seat: SemaphorePermit<'_>,
    ) -> Result<JobHandle<F::Output>, Rejected<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // Boxed before the lock is taken; queued without another allocation.
        let (prepared, rx) = Prepared::new(fut);
        let mut queue = self.queue();
        if queue.closed {
            drop(queue);
            return Err(self.reject(self.why_closed(), prepared.into_future()));
        }
        // The place now belongs to the job: the worker that takes it counts it freed.
        seat.forget();
        queue.jobs.push_back(prepared.into_job());
        queue.submitted += 1;
        let wake = if queue.jobs.len() > queue.searching * JOBS_PER_SEARCHING_WORKER {
            queue.parked.pop()
        } else {
            None
        };
        if wake.is_some() {
            queue.searching += 1;
        }
        drop(queue);
        if let Some(worker) = wake {
            worker.unpark();
        }
        Ok(JobHandle::new(rx))
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
        let idle = {
            let mut queue = self.queue();
            queue.closed = true;
            queue.unpark_all()
        };
        self.seats.close();
        self.tracker.close();
        unpark(idle);
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
        self.counters
            .dropped
            .fetch_add(dropped.len() as u64, Relaxed);
        // Outside the lock: dropping a job runs its future's destructors,
        // which may call back into the pool.
        for job in dropped {
            job.drop_unstarted(self.why_jobs_were_dropped());
        }
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
                // A new worker looks at the queue before it parks.
                queue.searching += 1;
                // Spawned under the lock, so `stop` cannot miss a worker.
                let worker = self.spawn_worker(index);
                queue.handles.push(worker);
            }
        }
        // Idle workers above the new count wake up and leave; the others
        // park again.
        let idle = if queue.workers > count {
            queue.unpark_all()
        } else {
            Vec::new()
        };
        drop(queue);
        unpark(idle);
    }

    fn spawn_worker(self: &Arc<Self>, index: usize) -> AbortHandle {
        self.counters.workers.fetch_add(1, Relaxed);
        let gone = WorkerGone {
            tally: self.counters.new_tally(),
            counters: Arc::clone(&self.counters),
        };
        let span =
            tracing::info_span!(parent: &self.span, "worker", pool = %self.name, worker = index);
        let work = self.ctx.scope(Arc::clone(self).work(gone)).instrument(span);
        self.tracker.spawn_on(work, &self.runtime).abort_handle()
    }

    /// Under one lock: stops searching (if this worker was), then takes the
    /// next job, parks or leaves. `slow`: this worker's jobs are slow
    /// ([`Pace`]), so a waiting submitter gets its place at once.
    fn next(&self, searching: bool, slow: bool, parker: &Arc<Parker>) -> Next {
        let mut queue = self.queue();
        if searching {
            queue.searching -= 1;
        }
        if queue.workers > queue.target {
            queue.workers -= 1;
            return Next::Leave;
        }
        let Some(job) = queue.jobs.pop_front() else {
            if queue.closed {
                queue.workers -= 1;
                return Next::Leave;
            }
            queue.parked.push(Arc::clone(parker));
            return Next::Park;
        };
        let mut wake = Wake::default();
        if !queue.jobs.is_empty() && queue.searching == 0 {
            wake.worker = queue.parked.pop();
            if wake.worker.is_some() {
                queue.searching += 1;
            }
        }
        queue.freed += 1;
        wake.submitter_waits = queue.waiting_submitters > 0;
        if queue.freed >= self.freed_chunk
            || (wake.submitter_waits && (queue.jobs.is_empty() || slow))
        {
            wake.places = std::mem::take(&mut queue.freed);
        }
        Next::Run(job, wake)
    }

    async fn work(self: Arc<Self>, gone: WorkerGone) {
        let tally = &gone.tally;
        let parker = Arc::new(Parker::default());
        let mut pace = Pace::new();
        // Counted as searching by `resize`, which spawned it.
        let mut searching = true;
        loop {
            let (job, wake) = match self.next(searching, pace.slow, &parker) {
                Next::Run(job, wake) => (job, wake),
                Next::Leave => return,
                Next::Park => {
                    pace.parks();
                    parker.park().await;
                    // Counted as searching by whoever unparked it.
                    searching = true;
                    continue;
                }
            };
            searching = false;
            let job = job.start(&self, tally);
            let holds_places = wake.holds_places();
            let stepping_aside = wake.wakes_anybody();
            if let Some(worker) = wake.worker {
                worker.unpark();
            }
            if wake.places > 0 {
                self.seats.add_permits(wake.places);
            }
            if stepping_aside {
                // What was just woken sits in this thread's LIFO slot (see
                // the module docs).
                let_the_lifo_slot_run().await;
            }
            pace.job_starts();
            job.run(holds_places).await;
            pace.job_ended();
            // A worker with a long queue of quick jobs would otherwise never
            // give its thread back.
            tokio::task::coop::consume_budget().await;
        }
    }
}

impl Queue {
    /// Takes every parked worker out to be unparked; they count as searching.
    fn unpark_all(&mut self) -> Vec<Arc<Parker>> {
        let idle = std::mem::take(&mut self.parked);
        self.searching += idle.len();
        idle
    }
}

fn unpark(idle: Vec<Arc<Parker>>) {
    for worker in idle {
        worker.unpark();
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
        self.0.queue().waiting_submitters -= 1;
    }
}

/// Counts a worker out however it ends (left, stopped, or dropped by the
/// runtime, even before it first ran), keeping what its tally counted.
struct WorkerGone {
    tally: Arc<Tally>,
    counters: Arc<Counters>,
}

impl Drop for WorkerGone {
    fn drop(&mut self) {
        self.counters.retire(&self.tally);
        self.counters.workers.fetch_sub(1, Relaxed);
    }
}
