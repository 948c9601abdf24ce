//! [`PoolStats`]: what a [`WorkerPool`](super::WorkerPool) has done so far.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// A snapshot of a [`WorkerPool`](super::WorkerPool)'s counters.
///
/// Every accepted job is in exactly one of `waiting`, `running`, `completed`
/// and `failed`, so once the pool is quiet
/// `submitted == waiting + running + completed + failed`.
///
/// The pool never looks inside a job's output: a job whose future returns
/// `Err(..)` still *completed* — the error is the caller's to read from the
/// [`JobHandle`](super::JobHandle). `failed` counts jobs that ended without an
/// output: they panicked (also counted in `panicked`), or were dropped unfinished
/// by [`abort`](super::WorkerPool::abort), by dropping the pool, or by the
/// cancellation of its context.
///
/// Each counter is exact; a snapshot taken while jobs are moving may catch one
/// job between two counters.
///
/// ```
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = WorkerPool::new(2);
/// let handle = pool.submit(async { 1 + 1 }).await.unwrap();
/// assert_eq!(handle.await.unwrap(), 2);
/// let stats = pool.stats();
/// assert_eq!((stats.submitted, stats.completed, stats.failed), (1, 1, 0));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Jobs accepted by `submit` or `try_submit`.
    pub submitted: u64,
    /// Submissions refused: queue full (`try_submit`), pool closed or stopped,
    /// or the caller's context cancelled while `submit` waited.
    pub rejected: u64,
    /// Jobs queued and not yet started.
    pub waiting: usize,
    /// Jobs a worker is running now.
    pub running: usize,
    /// Jobs that ran to the end and produced an output (`Ok` or `Err` alike).
    pub completed: u64,
    /// Jobs that ended without an output: panicked, aborted or cancelled.
    pub failed: u64,
    /// Jobs that panicked (a subset of `failed`).
    pub panicked: u64,
    /// Worker tasks alive now.
    pub workers: usize,
}

/// The live counters behind [`PoolStats`], but for `submitted` and
/// `waiting`, which the queue keeps under its lock, and what the workers
/// count in their own [`Tally`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) rejected: AtomicU64,
    /// Jobs dropped before any worker took them (the pool stopped).
    pub(super) dropped: AtomicU64,
    pub(super) workers: AtomicUsize,
    tallies: Mutex<Tallies>,
}

/// The tallies of the live workers, and the sum of those that have ended.
#[derive(Debug, Default)]
struct Tallies {
    live: Vec<Arc<Tally>>,
    ended: PoolStats,
}

/// What one worker has done. Only that worker writes it, and it sits on a
/// cache line of its own, so workers finishing jobs side by side never
/// contend on a shared counter.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Tally {
    pub(super) running: AtomicUsize,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) panicked: AtomicU64,
}

impl Tally {
    fn add_to(&self, stats: &mut PoolStats) {
        stats.running += self.running.load(Relaxed);
        stats.completed += self.completed.load(Relaxed);
        stats.failed += self.failed.load(Relaxed);
        stats.panicked += self.panicked.load(Relaxed);
    }
}

impl Counters {
    /// A tally for a new worker, counted from now on.
    pub(super) fn new_tally(&self) -> Arc<Tally> {
        let tally = Arc::new(Tally::default());
        self.tallies().live.push(Arc::clone(&tally));
        tally
    }

    /// Folds an ending worker's tally into the sum of ended ones.
    pub(super) fn retire(&self, tally: &Arc<Tally>) {
        let mut tallies = self.tallies();
        tallies.live.retain(|live| !Arc::ptr_eq(live, tally));
        tally.add_to(&mut tallies.ended);
    }

    fn tallies(&self) -> MutexGuard<'_, Tallies> {
        // Plain sums that no panic leaves half done.
        self.tallies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn snapshot(&self, submitted: u64, waiting: usize) -> PoolStats {
        let mut stats = {
            let tallies = self.tallies();
            let mut stats = tallies.ended;
            for tally in &tallies.live {
                tally.add_to(&mut stats);
            }
            stats
        };
        stats.submitted = submitted;
        stats.waiting = waiting;
        stats.rejected = self.rejected.load(Relaxed);
        stats.failed += self.dropped.load(Relaxed);
        stats.workers = self.workers.load(Relaxed);
        stats
    }
}
