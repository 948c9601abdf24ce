//! [`Rejected`]: a submission the pool refused, with the job given back.

use std::error::Error;
use std::fmt;
use std::sync::Mutex;

use crate::context::ContextError;

/// Why a [`WorkerPool`](super::WorkerPool) refused a job.
///
/// ```
/// use tokio_conc::pool::RejectReason;
/// assert_eq!(RejectReason::Full.to_string(), "worker pool queue is full");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The queue was full ([`try_submit`](super::WorkerPool::try_submit) only:
    /// [`submit`](super::WorkerPool::submit) waits instead).
    Full,
    /// The pool was closed, aborted or dropped: it takes no more work.
    Closed,
    /// A context was cancelled: the pool's own (the pool has stopped), or the
    /// caller's current one while [`submit`](super::WorkerPool::submit) waited
    /// for space.
    Cancelled(ContextError),
}

impl RejectReason {
    /// The context's error, for [`Cancelled`](Self::Cancelled): every error
    /// of the crate that a context can cause says so through a
    /// `context_error()` like this one (see the crate docs, "Contexts").
    ///
    /// ```
    /// use tokio_conc::pool::RejectReason;
    /// use tokio_conc::ContextError;
    ///
    /// let reason = RejectReason::Cancelled(ContextError::DeadlineExceeded);
    /// assert_eq!(reason.context_error(), Some(&ContextError::DeadlineExceeded));
    /// assert_eq!(RejectReason::Full.context_error(), None);
    /// ```
    pub fn context_error(&self) -> Option<&ContextError> {
        match self {
            RejectReason::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Full => f.write_str("worker pool queue is full"),
            RejectReason::Closed => f.write_str("worker pool is closed"),
            RejectReason::Cancelled(reason) => {
                write!(f, "worker pool submission stopped: {reason}")
            }
        }
    }
}

/// A job the pool did not accept, and why. The job comes back untouched with
/// [`into_job`](Self::into_job), so the caller can retry it, run it elsewhere, or
/// report it — nothing is lost silently.
///
/// ```
/// use tokio_conc::prelude::*;
/// use tokio_conc::pool::RejectReason;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = WorkerPool::new(1);
/// pool.close();
/// let rejected = pool.try_submit(async { 7 }).unwrap_err();
/// assert_eq!(rejected.reason(), &RejectReason::Closed);
/// assert_eq!(rejected.into_job().await, 7, "the job came back and still runs");
/// # }
/// ```
///
/// `Rejected<F>` is an [`Error`] that is `Send + Sync` whenever the job is
/// `Send` — even a job that is not `Sync`, such as a
/// `Pin<Box<dyn Future + Send>>` — so `pool.submit(job).await?` works in a
/// function returning `Result<_, Box<dyn Error + Send + Sync>>`:
///
/// ```
/// use std::error::Error;
/// use std::future::Future;
/// use std::pin::Pin;
/// use tokio_conc::prelude::*;
///
/// type Job = Pin<Box<dyn Future<Output = u32> + Send>>;
///
/// async fn run(pool: &WorkerPool, job: Job) -> Result<u32, Box<dyn Error + Send + Sync>> {
///     let handle = pool.submit(job).await?;
///     Ok(handle.await?)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = WorkerPool::new(1);
/// assert_eq!(run(&pool, Box::pin(async { 7 })).await.unwrap(), 7);
/// pool.close();
/// let err = run(&pool, Box::pin(async { 8 })).await.unwrap_err();
/// assert_eq!(err.to_string(), "worker pool is closed");
/// # }
/// ```
pub struct Rejected<F> {
    reason: RejectReason,
    /// Behind a lock only so that the error is `Sync` for any `Send` job: it
    /// is never locked but to take the job out.
    job: Mutex<F>,
}

impl<F> Rejected<F> {
    pub(super) fn new(reason: RejectReason, job: F) -> Self {
        Rejected {
            reason,
            job: Mutex::new(job),
        }
    }

    /// Why the job was refused.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// pool.close();
    /// let rejected = pool.try_submit(async {}).unwrap_err();
    /// assert!(!rejected.is_full());
    /// println!("{}", rejected.reason());
    /// # }
    /// ```
    pub fn reason(&self) -> &RejectReason {
        &self.reason
    }

    /// Whether the queue was full (load shedding), rather than the pool or a
    /// context being done.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(Workers::new(1).buffer(1));
    /// let _queued = pool.try_submit(async {}).unwrap(); // the worker has not run yet
    /// assert!(pool.try_submit(async {}).unwrap_err().is_full());
    /// # }
    /// ```
    pub fn is_full(&self) -> bool {
        self.reason == RejectReason::Full
    }

    /// The job that was refused.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// pool.abort();
    /// let job = pool.try_submit(async { 1 }).unwrap_err().into_job();
    /// assert_eq!(job.await, 1);
    /// # }
    /// ```
    pub fn into_job(self) -> F {
        // Nothing ever runs while the lock is held, so it cannot be poisoned;
        // the job is intact either way.
        self.job.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// The context's error, if a cancelled context refused the job — the
    /// pool's, or the caller's while [`submit`](super::WorkerPool::submit)
    /// waited for room. See [`RejectReason::context_error`].
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let pool = WorkerPool::new(Workers::new(1).context(&ctx));
    /// ctx.cancel();
    /// let rejected = pool.try_submit(async {}).unwrap_err();
    /// assert_eq!(rejected.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn context_error(&self) -> Option<&ContextError> {
        self.reason.context_error()
    }
}

/// Shows the reason only: the job is usually an unnameable future.
impl<F> fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl<F> Error for Rejected<F> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.reason {
            RejectReason::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }
}
