//! [`PoolStats`]: what a [`WorkerPool`](super::WorkerPool) has done so far.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
/// `waiting`, which the queue keeps under its lock.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) rejected: AtomicU64,
    pub(super) running: AtomicUsize,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) panicked: AtomicU64,
    pub(super) workers: AtomicUsize,
}

impl Counters {
    pub(super) fn snapshot(&self, submitted: u64, waiting: usize) -> PoolStats {
        PoolStats {
            submitted,
            rejected: self.rejected.load(Relaxed),
            waiting,
            running: self.running.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            workers: self.workers.load(Relaxed),
        }
    }
}
