//! A job in the queue, the [`JobHandle`] its submitter awaits, and [`JobError`].
//!
//! A job costs two allocations: the boxed future (with the sending half of
//! its result slot), made before the queue's lock is taken and turned into a
//! type-erased [`Job`] without another, and the result slot it shares with
//! its handle. Neither holds a reference to the pool: the worker running a
//! job lends it its own tally to count in, and whoever drops a job unfinished (a stopping
//! pool, an aborted worker) sends the pool's reason to its handle.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::shared::Shared;
use super::stats::Tally;
use crate::context::ContextError;

type Outcome<T> = Result<T, JobError>;

/// A queued job: the type-erased work.
pub(super) struct Job {
    work: Pin<Box<dyn Run>>,
}

/// A submitted future before it is queued: still typed, so that a pool that
/// closed meanwhile can give the future back.
pub(super) struct Prepared<F: Future> {
    work: Box<Work<F>>,
}

impl<F> Prepared<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Boxes `fut` with the sender of its result slot; returns the receiver too.
    pub(super) fn new(fut: F) -> (Self, oneshot::Receiver<Outcome<F::Output>>) {
        let (tx, rx) = oneshot::channel();
        let work = Box::new(Work {
            fut: Some(fut),
            tx: Some(tx),
        });
        (Prepared { work }, rx)
    }

    /// The job to queue (no allocation: the box is reused).
    pub(super) fn into_job(self) -> Job {
        Job {
            work: Box::into_pin(self.work),
        }
    }

    /// The future back, untouched.
    pub(super) fn into_future(self) -> F {
        self.work
            .fut
            .expect("a prepared job holds its future until it is queued")
    }
}

impl Job {
    /// Marks the job running (a worker has taken it); from here until it
    /// ends, however that happens, the counters account for it and its
    /// handle learns how it ended.
    pub(super) fn start<'a>(self, shared: &'a Shared, tally: &'a Tally) -> Started<'a> {
        tally.running.fetch_add(1, Relaxed);
        Started {
            job: self,
            shared,
            tally,
            ended: false,
        }
    }

    /// Drops the job unstarted (the pool stopped), telling its handle why.
    pub(super) fn drop_unstarted(mut self, error: JobError) {
        self.work.as_mut().abandon(error);
    }
}

/// A job a worker has taken. Dropped before it ends (its worker aborted),
/// it counts as failed and its handle gets the pool's reason.
pub(super) struct Started<'a> {
    job: Job,
    shared: &'a Shared,
    tally: &'a Tally,
    ended: bool,
}

impl Started<'_> {
    /// Runs the job to its end. With `give_back_if_pending`, the first time
    /// the job waits (returns `Pending`), the places the pool's workers have
    /// counted go back to the submitters first (see `shared.rs`, "Places come
    /// back in chunks").
    pub(super) async fn run(mut self, mut give_back_if_pending: bool) {
        let (tally, shared) = (self.tally, self.shared);
        let work = &mut self.job.work;
        std::future::poll_fn(|cx| {
            let poll = work.as_mut().poll_run(cx, tally);
            if poll.is_pending() && give_back_if_pending {
                give_back_if_pending = false;
                shared.give_back_freed_places();
            }
            poll
        })
        .await;
        self.ended = true;
    }
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.tally.running.fetch_sub(1, Relaxed);
        self.tally.failed.fetch_add(1, Relaxed);
        let why = self.shared.why_jobs_were_dropped();
        self.job.work.as_mut().abandon(why);
    }
}

/// A job's future, polled with the tally of the worker running it.
trait Run: Send {
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>, tally: &Tally) -> Poll<()>;

    /// Drops the future unfinished, then sends `error` to the handle.
    fn abandon(self: Pin<&mut Self>, error: JobError);
}

pin_project! {
    /// A submitted future and where its outcome goes. The future is dropped
    /// inside the panic catch too: a panic in its destructor is the job's,
    /// not one that kills the worker and leaves the queue to nobody.
    struct Work<F: Future> {
        #[pin]
        fut: Option<F>,
        tx: Option<oneshot::Sender<Outcome<F::Output>>>,
    }
}

impl<F> Run for Work<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>, tally: &Tally) -> Poll<()> {
        let mut this = self.project();
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(payload) => Err(JobError::panicked(payload)),
        };
        // If the destructor panics, `set` still leaves `None` behind.
        let dropped = catch_unwind(AssertUnwindSafe(|| this.fut.set(None)));
        let outcome = match (outcome, dropped) {
            (Ok(_lost), Err(payload)) => Err(JobError::panicked(payload)),
            (outcome, _) => outcome,
        };
        if let Some(tx) = this.tx.take() {
            finish(tx, outcome, tally);
        }
        Poll::Ready(())
    }

    fn abandon(self: Pin<&mut Self>, error: JobError) {
        let mut this = self.project();
        // Dropped first, so that whoever the handle wakes finds its
        // destructors have run.
        this.fut.set(None);
        if let Some(tx) = this.tx.take() {
            let _ = tx.send(Err(error));
        }
    }
}

/// Counts the job's end, then sends its outcome. Counted first, so a caller
/// who has awaited the handle reads counters that already include this job.
fn finish<T>(tx: oneshot::Sender<Outcome<T>>, outcome: Outcome<T>, tally: &Tally) {
    tally.running.fetch_sub(1, Relaxed);
    match &outcome {
        Ok(_) => tally.completed.fetch_add(1, Relaxed),
        Err(_) => {
            tally.panicked.fetch_add(1, Relaxed);
            tally.failed.fetch_add(1, Relaxed)
        }
    };
    match tx.send(outcome) {
        Ok(()) => {}
        Err(Err(lost)) => {
            // Nobody holds the handle: the counters are the only witness left,
            // so say it in the logs too rather than let the panic vanish.
            tracing::error!(panic = %lost, "a worker-pool job panicked and its handle was dropped");
        }
        Err(Ok(unwanted)) => {
            // Dropped here, on the worker, which a panic in the output's
            // destructor must not kill: the queue would be left to nobody.
            let dropped = catch_unwind(AssertUnwindSafe(|| drop(unwanted)));
            if let Err(payload) = dropped {
                let panic = message_of(payload.as_ref()).unwrap_or("a non-string payload");
                tracing::error!(
                    panic,
                    "dropping the output of a worker-pool job whose handle was dropped panicked"
                );
            }
        }
    }
}

/// The result of a job submitted to a [`WorkerPool`](super::WorkerPool): a future
/// resolving to the job's output, or to a [`JobError`] saying why there is none.
///
/// Dropping the handle does not cancel the job: it still runs, and its output is
/// discarded (a panic is then still counted in
/// [`PoolStats::panicked`](super::PoolStats::panicked) and logged at `error`).
///
/// ```
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = WorkerPool::new(1);
/// let handle = pool.submit(async { "done" }).await.unwrap();
/// assert_eq!(handle.await.unwrap(), "done");
/// # }
/// ```
#[must_use = "a JobHandle does nothing unless awaited; dropping it discards the job's output"]
pub struct JobHandle<T> {
    rx: oneshot::Receiver<Outcome<T>>,
}

impl<T> JobHandle<T> {
    pub(super) fn new(rx: oneshot::Receiver<Outcome<T>>) -> Self {
        JobHandle { rx }
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.rx).poll(cx)) {
            Ok(outcome) => outcome,
            // Dropped with no word from the pool: its runtime shut down.
            Err(_) => Err(JobError::aborted()),
        })
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle").finish_non_exhaustive()
    }
}

/// Why a [`JobHandle`] has no output: the job panicked, or it was dropped
/// before it finished because the pool was aborted (or dropped) or its context
/// was cancelled.
///
/// Like [`tokio::task::JoinError`], it keeps a panic's payload so the caller can
/// [resume](std::panic::resume_unwind) it or read its message.
///
/// ```
/// use tokio_conc::pool::JobError;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = WorkerPool::new(1);
/// let handle = pool.submit(async { panic!("boom") }).await.unwrap();
/// let err: JobError = handle.await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message().as_deref(), Some("boom"));
/// # }
/// ```
pub struct JobError {
    kind: Kind,
}

enum Kind {
    /// Behind a mutex only so that `JobError` is `Sync`: the payload is taken
    /// once, by value.
    Panicked(Mutex<Box<dyn Any + Send + 'static>>),
    Aborted,
    Cancelled(ContextError),
}

impl JobError {
    pub(super) fn panicked(payload: Box<dyn Any + Send + 'static>) -> Self {
        JobError {
            kind: Kind::Panicked(Mutex::new(payload)),
        }
    }

    pub(super) fn aborted() -> Self {
        JobError {
            kind: Kind::Aborted,
        }
    }

    pub(super) fn cancelled(reason: ContextError) -> Self {
        JobError {
            kind: Kind::Cancelled(reason),
        }
    }

    /// Whether the job panicked.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let err = pool.submit(async { panic!() }).await.unwrap().await.unwrap_err();
    /// assert!(err.is_panic());
    /// # }
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panicked(_))
    }

    /// Whether the job was dropped because the pool was
    /// [aborted](super::WorkerPool::abort) or dropped without being closed.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let handle = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// pool.abort();
    /// assert!(handle.await.unwrap_err().is_aborted());
    /// # }
    /// ```
    pub fn is_aborted(&self) -> bool {
        matches!(self.kind, Kind::Aborted)
    }

    /// Whether the job was dropped because the pool's context was cancelled.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let pool = WorkerPool::new(Workers::new(1).context(&ctx));
    /// let handle = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// ctx.cancel();
    /// let err = handle.await.unwrap_err();
    /// assert_eq!(err.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, Kind::Cancelled(_))
    }

    /// Why the pool's context was cancelled, if that is what stopped the job.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let err = pool.submit(async { panic!() }).await.unwrap().await.unwrap_err();
    /// assert_eq!(err.context_error(), None);
    /// # }
    /// ```
    pub fn context_error(&self) -> Option<&ContextError> {
        match &self.kind {
            Kind::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }

    /// The panic's message, when the payload is a string (as `panic!` with a
    /// message makes it).
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let err = pool.submit(async { panic!("bad {}", 7) }).await.unwrap().await.unwrap_err();
    /// assert_eq!(err.panic_message().as_deref(), Some("bad 7"));
    /// # }
    /// ```
    pub fn panic_message(&self) -> Option<String> {
        let Kind::Panicked(payload) = &self.kind else {
            return None;
        };
        let payload = payload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        message_of(payload.as_ref()).map(str::to_owned)
    }

    /// The panic's payload, or the error back if the job did not panic.
    ///
    /// ```
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let err = pool.submit(async { std::panic::panic_any(42_u8) }).await.unwrap().await.unwrap_err();
    /// let payload = err.try_into_panic().unwrap();
    /// assert_eq!(payload.downcast_ref::<u8>(), Some(&42));
    /// # }
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JobError> {
        match self.kind {
            Kind::Panicked(payload) => Ok(payload
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())),
            kind => Err(JobError { kind }),
        }
    }

    /// The panic's payload, to pass to [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// If the job did not panic.
    ///
    /// ```should_panic
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = WorkerPool::new(1);
    /// let err = pool.submit(async { panic!("boom") }).await.unwrap().await.unwrap_err();
    /// std::panic::resume_unwind(err.into_panic()); // the caller panics with "boom"
    /// # }
    /// ```
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .unwrap_or_else(|err| panic!("JobError::into_panic on a job that did not panic: {err}"))
    }
}

/// The text of a panic payload made by `panic!("…")`.
fn message_of(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Panicked(_) => match self.panic_message() {
                Some(message) => write!(f, "job panicked: {message}"),
                None => f.write_str("job panicked"),
            },
            Kind::Aborted => f.write_str("job aborted: the worker pool was aborted or dropped"),
            Kind::Cancelled(reason) => write!(f, "job stopped: {reason}"),
        }
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or_else(|| "..".into()))
                .finish(),
            Kind::Aborted => f.write_str("Aborted"),
            Kind::Cancelled(reason) => f.debug_tuple("Cancelled").field(reason).finish(),
        }
    }
}

impl Error for JobError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }
}
