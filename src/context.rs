//! [`TaskContext`]: Go's `context.Context` for Tokio — cancellation, deadlines,
//! causes and request-scoped values in one cheap, clonable handle.
//!
//! A context is a node in a tree. Deriving one ([`child`](TaskContext::child),
//! [`with_timeout`](TaskContext::with_timeout), [`with_value`](TaskContext::with_value),
//! …) makes a new node under it: cancelling a node cancels its whole subtree and
//! never its parent or siblings. Values are looked up by type, walking from the
//! node towards the root, so a nearer value shadows a farther one.
//! [`without_cancel`](TaskContext::without_cancel) starts a new cancellation
//! scope that keeps the values.
//!
//! ```
//! use std::time::Duration;
//! use tokio_conc::context::{ContextError, TaskContext};
//!
//! #[derive(Debug, PartialEq)]
//! struct SessionId(&'static str);
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let root = TaskContext::background();
//! let request = root
//!     .with_value(SessionId("42"))
//!     .with_timeout(Duration::from_millis(50));
//!
//! assert_eq!(request.value::<SessionId>(), Some(&SessionId("42")));
//! let slow = request.run(tokio::time::sleep(Duration::from_secs(1))).await;
//! assert_eq!(slow, Err(ContextError::DeadlineExceeded));
//! assert!(!root.is_cancelled(), "a child's deadline never cancels its parent");
//! # }
//! ```
//!
//! # Waiting on Tokio's primitives
//!
//! [`run`](TaskContext::run) is the one way to bound any wait by a context — a
//! [`Semaphore`](tokio::sync::Semaphore) permit, an mpsc receive, a sleep — as
//! Go's `select` on `ctx.Done()` is: the wait is dropped when the context
//! stops, which Tokio's primitives take as giving up (a dropped `acquire`
//! leaves the queue, so no permit is lost; a dropped `recv` loses no message).
//!
//! ```
//! use std::time::Duration;
//! use tokio::sync::Semaphore;
//! use tokio_conc::context::{ContextError, TaskContext};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let sem = Semaphore::new(1);
//! let _held = sem.acquire().await.unwrap();
//! let ctx = TaskContext::background().with_timeout(Duration::from_millis(10));
//! let waited = ctx.run(sem.acquire()).await;
//! assert!(matches!(waited, Err(ContextError::DeadlineExceeded)));
//! # }
//! ```
//!
//! # How it works (the invariants)
//!
//! * Every node owns a [`CancellationToken`]: a child token of its parent's,
//!   except at a root ([`background`](TaskContext::background), a token, or
//!   [`without_cancel`](TaskContext::without_cancel)), whose token is its own.
//!   The token is cancelled exactly when the node is stopped by hand, by an
//!   ancestor in its scope, or by a deadline that has been *observed*.
//! * Deadlines are lazy: deriving one spawns nothing. A node stores its
//!   effective deadline (the earliest in its scope); the node that set it
//!   (its *owner*) stores when it could first fire and its cause. Whoever
//!   looks (`is_cancelled`, `err`, `cause`, `cancelled`, `token`, `cancel`)
//!   and finds the deadline passed stops the owner, recording the deadline as
//!   the reason. Only [`token`](TaskContext::token) (whose holder may never
//!   look again) and [`after_cancel`](TaskContext::after_cancel) arm a timer
//!   task; `cancelled()` waits on a timer of its own, so `run` spawns nothing.
//! * Whoever stops a node records why, and when, before cancelling its
//!   token; the first stop wins. A node's reason is the nearest record in its
//!   scope, unless its deadline could fire no later than that record was
//!   made: then it is the deadline — the answer an eager timer would give.

use std::any::{Any, TypeId};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: TaskContext;
}

/// Why a [`TaskContext`] was stopped: what [`TaskContext::err`],
/// [`TaskContext::cause`] and [`TaskContext::run`] report.
///
/// ```
/// use tokio_conc::context::{ContextError, TaskContext};
///
/// let ctx = TaskContext::background();
/// assert_eq!(ctx.err(), None);
/// ctx.cancel();
/// assert_eq!(ctx.err(), Some(ContextError::Cancelled));
/// assert_eq!(ContextError::Cancelled.to_string(), "context cancelled");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum ContextError {
    /// Cancelled by [`TaskContext::cancel`] (on it or on an ancestor), or by the
    /// [`CancellationToken`] it was made from.
    Cancelled,
    /// The context's deadline passed (Go's `context.DeadlineExceeded`).
    DeadlineExceeded,
    /// Cancelled by [`TaskContext::cancel_with`] with this cause (Go's
    /// `WithCancelCause`); also what [`TaskContext::cause`] reports for a
    /// deadline given a cause with
    /// [`with_deadline_cause`](TaskContext::with_deadline_cause).
    Cause(Arc<dyn Error + Send + Sync>),
}

impl ContextError {
    /// The cause given to [`TaskContext::cancel_with`] (or to
    /// [`with_deadline_cause`](TaskContext::with_deadline_cause), as read
    /// through [`TaskContext::cause`]), if that is how the context was stopped.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// let ctx = TaskContext::background();
    /// ctx.cancel_with(std::io::Error::other("disk full"));
    /// assert_eq!(ctx.err().unwrap().cause().unwrap().to_string(), "disk full");
    /// ```
    pub fn cause(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match self {
            ContextError::Cause(cause) => Some(cause.as_ref()),
            _ => None,
        }
    }

    /// Whether the deadline passed, rather than someone cancelling.
    ///
    /// ```
    /// use tokio_conc::context::ContextError;
    /// assert!(ContextError::DeadlineExceeded.is_deadline_exceeded());
    /// assert!(!ContextError::Cancelled.is_deadline_exceeded());
    /// ```
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, ContextError::DeadlineExceeded)
    }
}

impl fmt::Debug for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::Cancelled => f.write_str("Cancelled"),
            ContextError::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            ContextError::Cause(cause) => f.debug_tuple("Cause").field(cause).finish(),
        }
    }
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::Cancelled => f.write_str("context cancelled"),
            ContextError::DeadlineExceeded => f.write_str("context deadline exceeded"),
            ContextError::Cause(cause) => write!(f, "context cancelled: {cause}"),
        }
    }
}

impl Error for ContextError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ContextError::Cause(cause) => Some(cause.as_ref()),
            _ => None,
        }
    }
}

/// Two causes are equal when they are the same cause object (a cloned error
/// compares equal to itself, not to another error with the same message).
impl PartialEq for ContextError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ContextError::Cancelled, ContextError::Cancelled) => true,
            (ContextError::DeadlineExceeded, ContextError::DeadlineExceeded) => true,
            (ContextError::Cause(a), ContextError::Cause(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for ContextError {}

/// A context value that also names itself in logs: [`TaskContext::span`] records
/// every value added with [`TaskContext::with_span_value`] as `FIELD=value`.
///
/// ```
/// use std::fmt;
/// use tokio_conc::context::SpanValue;
///
/// struct SessionId(String);
///
/// impl fmt::Display for SessionId {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str(&self.0)
///     }
/// }
///
/// impl SpanValue for SessionId {
///     const FIELD: &'static str = "session_id";
/// }
/// ```
pub trait SpanValue: fmt::Display + Send + Sync + 'static {
    /// The name the value is logged under, e.g. `"session_id"`.
    const FIELD: &'static str;
}

type Render = fn(&(dyn Any + Send + Sync), &mut fmt::Formatter<'_>) -> fmt::Result;

struct Value {
    type_id: TypeId,
    value: Box<dyn Any + Send + Sync>,
    /// Set only for [`SpanValue`]s: how to write `FIELD=value`. Kept as a plain
    /// function pointer so values that are not logged cost nothing extra.
    render: Option<Render>,
}

/// What the node that set a deadline knows about it.
struct OwnDeadline {
    /// The earliest instant the deadline could have stopped the node: the
    /// deadline, or the node's birth if it was born past it.
    fires_at: Instant,
    /// What [`TaskContext::cause`] reports when the deadline is the reason.
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl OwnDeadline {
    /// The cause a stop by this deadline reports.
    fn stop_cause(&self) -> ContextError {
        self.cause
            .clone()
            .map_or(ContextError::DeadlineExceeded, ContextError::Cause)
    }
}

/// Why, and when, a node was stopped, recorded by whoever stopped it.
struct Stop {
    reason: ContextError,
    cause: ContextError,
    at: Instant,
}

struct Inner {
    token: CancellationToken,
    /// The node this one was derived from: values (and the span) are looked
    /// up through it in every case.
    parent: Option<TaskContext>,
    /// Whether cancellation reaches this node from `parent`: false for a
    /// [`without_cancel`](TaskContext::without_cancel) node, which starts a
    /// scope of its own.
    linked: bool,
    /// The effective deadline: the earliest in this node's scope.
    deadline: Option<Instant>,
    /// Set on the node whose own deadline `deadline` is.
    own_deadline: Option<OwnDeadline>,
    value: Option<Value>,
    /// Set (before the token is cancelled) by whoever stops this very node.
    /// A node stopped through an ancestor leaves it empty and reports the
    /// ancestor's reason.
    stop: OnceLock<Stop>,
    /// The task that stops this node at its own deadline, armed only once a
    /// token is handed out. Dropping the node aborts it.
    timer: OnceLock<AbortOnDropHandle<()>>,
    /// Cancelled when this node is dropped, so that
    /// [`after_cancel`](TaskContext::after_cancel) tasks end with it.
    dropped: OnceLock<CancellationToken>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.get() {
            dropped.cancel();
        }
    }
}

/// A request-scoped context: cancellation, an optional deadline, the cause of
/// the cancellation, and typed values — Go's `context.Context`, built on
/// [`CancellationToken`].
///
/// Cloning is cheap (one `Arc`); clones are the same context. See the
/// [module docs](self) for the tree model.
///
/// ```
/// use tokio_conc::context::TaskContext;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = TaskContext::background();
/// let worker = ctx.child();
/// let handle = worker.spawn(async {
///     let me = TaskContext::current().expect("spawned inside the context");
///     me.cancelled().await;
///     "stopped"
/// });
/// ctx.cancel();
/// assert_eq!(handle.await.unwrap(), "stopped");
/// # }
/// ```
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

impl TaskContext {
    fn node(
        parent: Option<&TaskContext>,
        linked: bool,
        token: CancellationToken,
        deadline: Option<Instant>,
        own_deadline: Option<OwnDeadline>,
        value: Option<Value>,
    ) -> Self {
        TaskContext {
            inner: Arc::new(Inner {
                token,
                parent: parent.cloned(),
                linked,
                deadline,
                own_deadline,
                value,
                stop: OnceLock::new(),
                timer: OnceLock::new(),
                dropped: OnceLock::new(),
            }),
        }
    }

    /// A node under this one, in its cancellation scope.
    fn derive(
        &self,
        deadline: Option<Instant>,
        own_deadline: Option<OwnDeadline>,
        value: Option<Value>,
    ) -> Self {
        let token = self.inner.token.child_token();
        TaskContext::node(Some(self), true, token, deadline, own_deadline, value)
    }

    /// A root context, cancelled only by its own [`cancel`](Self::cancel).
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// assert!(!ctx.is_cancelled());
    /// assert!(ctx.deadline().is_none());
    /// ```
    pub fn background() -> Self {
        TaskContext::node(None, false, CancellationToken::new(), None, None, None)
    }

    /// A new cancellation scope under this one. It inherits the deadline and
    /// values; cancelling it leaves `self` untouched.
    ///
    /// ```
    /// let parent = tokio_conc::context::TaskContext::background();
    /// let child = parent.child();
    /// child.cancel();
    /// assert!(child.is_cancelled());
    /// assert!(!parent.is_cancelled());
    /// ```
    pub fn child(&self) -> Self {
        self.derive(self.inner.deadline, None, None)
    }

    /// A context with this one's values and span that is never cancelled by
    /// it — nor by its deadline (Go's `WithoutCancel`): for work that must
    /// finish after the request is gone, such as an audit write.
    ///
    /// It is a new root of cancellation: it has no deadline, its
    /// [`token`](Self::token) never fires from `self`, and its
    /// [`err`](Self::err) looks no further up than itself. Its own
    /// [`cancel`](Self::cancel) (or a deadline derived under it) still
    /// stops it and its descendants.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = TaskContext::background()
    ///     .with_value("req-7")
    ///     .with_timeout(Duration::from_millis(10));
    /// let audit = request.without_cancel();
    /// request.cancelled().await;
    /// assert!(!audit.is_cancelled());
    /// assert_eq!(audit.deadline(), None);
    /// assert_eq!(audit.value::<&str>(), Some(&"req-7"));
    /// # }
    /// ```
    pub fn without_cancel(&self) -> Self {
        TaskContext::node(
            Some(self),
            false,
            CancellationToken::new(),
            None,
            None,
            None,
        )
    }

    /// A child that cancels itself `timeout` from now, with the reason
    /// [`ContextError::DeadlineExceeded`]. If the parent's deadline is earlier,
    /// that one stays in force.
    ///
    /// Spawns nothing and needs no runtime: the deadline is checked whenever
    /// the context is looked at; a timer task is armed only once someone
    /// takes its [`token`](Self::token) (or registers
    /// [`after_cancel`](Self::after_cancel)), and dropping the context removes
    /// it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::{ContextError, TaskContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    /// ctx.cancelled().await;
    /// assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
    /// # }
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        self.timeout_child(timeout, None)
    }

    /// A child that cancels itself at `deadline` (the earlier of it and the
    /// parent's deadline), with the reason [`ContextError::DeadlineExceeded`].
    /// Like [`with_timeout`](Self::with_timeout), it spawns nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let soon = Instant::now() + Duration::from_secs(1);
    /// let outer = TaskContext::background().with_deadline(soon);
    /// let inner = outer.with_timeout(Duration::from_secs(60));
    /// assert_eq!(inner.deadline(), Some(soon), "the earlier deadline wins");
    /// # }
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        self.deadline_child(deadline, None)
    }

    /// [`with_timeout`](Self::with_timeout) whose deadline, when it is what
    /// stops the context, has `cause` as its [`cause`](Self::cause) (Go's
    /// `WithTimeoutCause`). [`err`](Self::err) still says
    /// [`DeadlineExceeded`](ContextError::DeadlineExceeded). If the parent's
    /// deadline is earlier, that one stays in force, with its own cause.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::{ContextError, TaskContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background()
    ///     .with_timeout_cause(Duration::from_secs(1), std::io::Error::other("backend slow"));
    /// ctx.cancelled().await;
    /// assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().cause().unwrap().to_string(), "backend slow");
    /// # }
    /// ```
    pub fn with_timeout_cause<E: Error + Send + Sync + 'static>(
        &self,
        timeout: Duration,
        cause: E,
    ) -> Self {
        self.timeout_child(timeout, Some(Arc::new(cause)))
    }

    /// [`with_deadline`](Self::with_deadline) whose deadline, when it is what
    /// stops the context, has `cause` as its [`cause`](Self::cause) (Go's
    /// `WithDeadlineCause`); see [`with_timeout_cause`](Self::with_timeout_cause).
    ///
    /// ```
    /// use tokio::time::Instant;
    /// use tokio_conc::context::{ContextError, TaskContext};
    ///
    /// let past = Instant::now();
    /// let ctx = TaskContext::background()
    ///     .with_deadline_cause(past, std::io::Error::other("too late"));
    /// assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "context cancelled: too late");
    /// ```
    pub fn with_deadline_cause<E: Error + Send + Sync + 'static>(
        &self,
        deadline: Instant,
        cause: E,
    ) -> Self {
        self.deadline_child(deadline, Some(Arc::new(cause)))
    }

    fn timeout_child(
        &self,
        timeout: Duration,
        cause: Option<Arc<dyn Error + Send + Sync>>,
    ) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.deadline_child(deadline, cause),
            // Beyond what an `Instant` can hold: never.
            None => self.child(),
        }
    }

    fn deadline_child(
        &self,
        deadline: Instant,
        cause: Option<Arc<dyn Error + Send + Sync>>,
    ) -> Self {
        if self.inner.deadline.is_some_and(|d| d <= deadline) {
            // The parent's fires first, and it reaches the child.
            return self.child();
        }
        if self.is_cancelled() {
            // Born stopped: the parent's reason stands, whatever the deadline.
            return self.derive(Some(deadline), None, None);
        }
        let own = OwnDeadline {
            fires_at: deadline.max(Instant::now()),
            cause,
        };
        self.derive(Some(deadline), Some(own), None)
    }

    /// A child carrying `value`, found by [`value::<T>()`](Self::value) on it and
    /// every descendant unless a nearer context holds another `T`.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct User(&'static str);
    ///
    /// let outer = TaskContext::background().with_value(User("ann"));
    /// let inner = outer.with_value(User("bob"));
    /// assert_eq!(outer.value::<User>(), Some(&User("ann")));
    /// assert_eq!(inner.value::<User>(), Some(&User("bob")));
    /// assert_eq!(inner.child().value::<User>(), Some(&User("bob")));
    /// assert_eq!(TaskContext::background().value::<User>(), None);
    /// ```
    pub fn with_value<T: Any + Send + Sync>(&self, value: T) -> Self {
        let value = Value {
            type_id: TypeId::of::<T>(),
            value: Box::new(value),
            render: None,
        };
        self.derive(self.inner.deadline, None, Some(value))
    }

    /// Like [`with_value`](Self::with_value), and [`span`](Self::span) records the
    /// value as `T::FIELD=value`, so every log line of work done in this context
    /// carries it.
    ///
    /// ```
    /// use std::fmt;
    /// use tokio_conc::context::{SpanValue, TaskContext};
    ///
    /// struct SessionId(u32);
    /// impl fmt::Display for SessionId {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
    /// }
    /// impl SpanValue for SessionId { const FIELD: &'static str = "session_id"; }
    ///
    /// let ctx = TaskContext::background().with_span_value(SessionId(42));
    /// assert_eq!(ctx.span_fields(), "session_id=42");
    /// assert_eq!(ctx.value::<SessionId>().unwrap().0, 42);
    /// ```
    pub fn with_span_value<T: SpanValue>(&self, value: T) -> Self {
        fn render<T: SpanValue>(
            value: &(dyn Any + Send + Sync),
            f: &mut fmt::Formatter<'_>,
        ) -> fmt::Result {
            match value.downcast_ref::<T>() {
                Some(value) => write!(f, "{}={}", T::FIELD, value),
                None => Ok(()),
            }
        }
        let value = Value {
            type_id: TypeId::of::<T>(),
            value: Box::new(value),
            render: Some(render::<T>),
        };
        self.derive(self.inner.deadline, None, Some(value))
    }

    /// The nearest value of type `T` on the way from this context to the root.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    /// let ctx = TaskContext::background().with_value(7_u32);
    /// assert_eq!(ctx.value::<u32>(), Some(&7));
    /// assert_eq!(ctx.value::<u64>(), None);
    /// ```
    pub fn value<T: Any + Send + Sync>(&self) -> Option<&T> {
        let wanted = TypeId::of::<T>();
        self.ancestry()
            .filter_map(|ctx| ctx.inner.value.as_ref())
            .find(|v| v.type_id == wanted)
            .and_then(|v| v.value.downcast_ref::<T>())
    }

    /// This context, then its parent, and so on up to the root.
    fn ancestry(&self) -> impl Iterator<Item = &TaskContext> {
        std::iter::successors(Some(self), |ctx| ctx.inner.parent.as_ref())
    }

    /// This context and the ancestors whose cancellation reaches it.
    fn scope_nodes(&self) -> impl Iterator<Item = &TaskContext> {
        std::iter::successors(Some(self), |ctx| {
            if ctx.inner.linked {
                ctx.inner.parent.as_ref()
            } else {
                None
            }
        })
    }

    /// The node that set this context's deadline, with what it knows of it.
    fn deadline_owner(&self) -> Option<(&TaskContext, &OwnDeadline)> {
        self.inner.deadline?;
        self.scope_nodes()
            .find_map(|ctx| ctx.inner.own_deadline.as_ref().map(|own| (ctx, own)))
    }

    /// Cancels this context and all its descendants, with the reason
    /// [`ContextError::Cancelled`]. Never touches the parent or siblings.
    /// Cancelling an already stopped context changes nothing.
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// let child = ctx.child();
    /// ctx.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.cancel_because(ContextError::Cancelled);
    }

    /// Cancels like [`cancel`](Self::cancel), keeping `cause` as the reason
    /// [`err`](Self::err) reports here and in every descendant. The first
    /// cancellation wins: a later cause is ignored.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// let ctx = TaskContext::background();
    /// let child = ctx.child();
    /// ctx.cancel_with(std::io::Error::other("upstream closed"));
    /// let err = child.err().unwrap();
    /// assert_eq!(err.to_string(), "context cancelled: upstream closed");
    /// ```
    pub fn cancel_with<E: Error + Send + Sync + 'static>(&self, cause: E) {
        self.cancel_because(ContextError::Cause(Arc::new(cause)));
    }

    fn cancel_because(&self, reason: ContextError) {
        // A deadline that passed unobserved stops the context first.
        if self.is_cancelled() {
            return;
        }
        self.record_stop(reason.clone(), reason, Instant::now());
    }

    /// Stops this very node, unless something already did.
    fn record_stop(&self, reason: ContextError, cause: ContextError, at: Instant) {
        if self.inner.token.is_cancelled() {
            return;
        }
        // The record goes in before the token fires, so anyone woken by the
        // token already sees it.
        let _ = self.inner.stop.set(Stop { reason, cause, at });
        self.inner.token.cancel();
    }

    /// Stops this context's deadline owner if the deadline has passed.
    #[inline]
    fn deadline_passed(&self) -> bool {
        match self.inner.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                self.fire_deadline();
                true
            }
            _ => false,
        }
    }

    #[cold]
    fn fire_deadline(&self) {
        if let Some((owner, own)) = self.deadline_owner() {
            owner.record_stop(
                ContextError::DeadlineExceeded,
                own.stop_cause(),
                own.fires_at,
            );
        }
    }

    /// Whether this context has been cancelled (directly, through an ancestor,
    /// or by its deadline).
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// assert!(!ctx.is_cancelled());
    /// ctx.cancel();
    /// assert!(ctx.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled() || self.deadline_passed()
    }

    /// Completes when this context is cancelled or its deadline passes.
    /// Cancel-safe: use it freely in `select!`. For a context with a deadline
    /// it waits on a timer of its own (no task is spawned), so it must be
    /// polled within a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// ctx.cancel();
    /// ctx.cancelled().await;
    /// # }
    /// ```
    pub fn cancelled(&self) -> CancelledFuture<'_> {
        CancelledFuture {
            ctx: self,
            token: self.inner.token.cancelled(),
            sleep: None,
        }
    }

    /// [`cancelled`](Self::cancelled) as a future that holds a clone of the
    /// context instead of borrowing it (`'static`), for keeping in a struct
    /// or moving into a task. Like `cancelled`, it spawns nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    /// let watcher = tokio::spawn(ctx.cancelled_owned());
    /// drop(ctx);
    /// watcher.await.unwrap();
    /// # }
    /// ```
    pub fn cancelled_owned(&self) -> CancelledOwned {
        CancelledOwned {
            token: self.inner.token.clone().cancelled_owned(),
            ctx: self.clone(),
            sleep: None,
        }
    }

    /// `None` while the context is live; once it has stopped, which kind of
    /// stop it was: [`Cancelled`](ContextError::Cancelled),
    /// [`DeadlineExceeded`](ContextError::DeadlineExceeded), or
    /// [`Cause`](ContextError::Cause) for [`cancel_with`](Self::cancel_with) —
    /// the reason of the nearest context (this one or an ancestor in its
    /// scope) that was stopped directly.
    ///
    /// ```
    /// use tokio_conc::context::{ContextError, TaskContext};
    /// let ctx = TaskContext::background();
    /// let child = ctx.child();
    /// assert_eq!(child.err(), None);
    /// ctx.cancel();
    /// assert_eq!(child.err(), Some(ContextError::Cancelled));
    /// ```
    pub fn err(&self) -> Option<ContextError> {
        self.stopped().map(|(reason, _)| reason)
    }

    /// `None` while the context is live; once it has stopped, the cause of
    /// the stop (Go's `context.Cause`): the cause given to
    /// [`cancel_with`](Self::cancel_with), or to
    /// [`with_deadline_cause`](Self::with_deadline_cause) /
    /// [`with_timeout_cause`](Self::with_timeout_cause) when that deadline
    /// stopped it — in both cases as [`ContextError::Cause`] — and otherwise
    /// the same as [`err`](Self::err). A child stopped through an ancestor
    /// reports the ancestor's cause, at any depth.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::{ContextError, TaskContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let parent = TaskContext::background();
    /// let child = parent.child().with_timeout(Duration::from_secs(5));
    /// assert_eq!(child.cause(), None);
    /// parent.cancel_with(std::io::Error::other("client went away"));
    /// assert_eq!(child.cause(), parent.cause());
    /// assert_eq!(child.cause().unwrap().cause().unwrap().to_string(), "client went away");
    ///
    /// let plain = TaskContext::background().with_timeout(Duration::from_secs(1));
    /// plain.cancelled().await;
    /// assert_eq!(plain.cause(), Some(ContextError::DeadlineExceeded), "no cause: as err()");
    /// # }
    /// ```
    pub fn cause(&self) -> Option<ContextError> {
        self.stopped().map(|(_, cause)| cause)
    }

    /// `(err, cause)` once stopped. See the module docs for the rule.
    fn stopped(&self) -> Option<(ContextError, ContextError)> {
        if !self.is_cancelled() {
            return None;
        }
        let recorded = self.scope_nodes().find_map(|ctx| ctx.inner.stop.get());
        if let (Some((_, own)), Some(stop)) = (self.deadline_owner(), recorded) {
            if own.fires_at <= stop.at {
                // The deadline came first, though nobody may have looked.
                return Some((ContextError::DeadlineExceeded, own.stop_cause()));
            }
        }
        Some(match recorded {
            Some(stop) => (stop.reason.clone(), stop.cause.clone()),
            // Cancelled through the CancellationToken: no record.
            None => (ContextError::Cancelled, ContextError::Cancelled),
        })
    }

    /// The instant this context cancels itself, if it has a deadline (its own or
    /// inherited).
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    /// assert_eq!(TaskContext::background().deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// The [`CancellationToken`] behind this context, for libraries that take
    /// one. It fires when the context is cancelled, by hand or at its deadline
    /// (for a deadline, handing out the token arms a small timer task, one per
    /// deadline, which goes away with the context). Cancelling the token
    /// cancels the context (with [`ContextError::Cancelled`]).
    ///
    /// # Panics
    ///
    /// For a context whose deadline is still ahead, outside a Tokio runtime:
    /// the timer needs one.
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// let token = ctx.token();
    /// ctx.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.arm_deadline("TaskContext::token");
        self.inner.token.clone()
    }

    /// Makes sure the token fires at the deadline: arms the owner's timer.
    fn arm_deadline(&self, operation: &str) {
        if self.inner.token.is_cancelled() || self.deadline_passed() {
            return;
        }
        let Some((owner, _)) = self.deadline_owner() else {
            return;
        };
        owner.inner.timer.get_or_init(|| {
            let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
                panic!(
                    "{operation} on a context with a deadline must be called within a Tokio \
                     runtime"
                )
            });
            let deadline = owner.inner.deadline.expect("an owner has a deadline");
            let token = owner.inner.token.clone();
            let weak: Weak<Inner> = Arc::downgrade(&owner.inner);
            AbortOnDropHandle::new(handle.spawn(async move {
                tokio::select! {
                    biased;
                    () = token.cancelled() => {}
                    () = tokio::time::sleep_until(deadline) => {
                        if let Some(inner) = weak.upgrade() {
                            (TaskContext { inner }).fire_deadline();
                        }
                    }
                }
            }))
        });
    }

    /// Runs `f` once, on a task of its own, when this context is cancelled
    /// or its deadline passes (Go's `AfterFunc`); at once if it already has.
    /// The returned guard's [`stop`](AfterCancel::stop) unregisters `f`.
    ///
    /// Dropping the guard does not unregister `f` (as losing Go's `stop`
    /// function does not): the registration lives until the context stops
    /// (then `f` runs) or until every handle to the context and its
    /// descendants is dropped (then `f` is dropped unrun, and its task ends:
    /// a context nobody holds can no longer be cancelled by hand). A panic
    /// in `f` ends its task and goes nowhere else.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let _guard = ctx.after_cancel(move || {
    ///     let _ = tx.send("connection closed");
    /// });
    /// ctx.cancel();
    /// assert_eq!(rx.await, Ok("connection closed"));
    ///
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&ran);
    /// let other = TaskContext::background();
    /// let guard = other.after_cancel(move || flag.store(true, Ordering::SeqCst));
    /// assert!(guard.stop(), "stopped before the context ended: f never runs");
    /// other.cancel();
    /// tokio::task::yield_now().await;
    /// assert!(!ran.load(Ordering::SeqCst));
    /// # }
    /// ```
    pub fn after_cancel<F>(&self, f: F) -> AfterCancel
    where
        F: FnOnce() + Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("TaskContext::after_cancel must be called within a Tokio runtime")
        });
        let state = Arc::new(AtomicU8::new(PENDING));
        let claim = Arc::clone(&state);
        let token = self.inner.token.clone();
        let deadline = self.inner.deadline;
        let dropped = self
            .inner
            .dropped
            .get_or_init(CancellationToken::new)
            .clone();
        let task = handle.spawn(async move {
            let stopped = async {
                match deadline {
                    Some(deadline) => tokio::select! {
                        biased;
                        () = token.cancelled() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    },
                    None => token.cancelled().await,
                }
            };
            tokio::select! {
                biased;
                () = stopped => {}
                // Every handle is gone and the context never stopped.
                () = dropped.cancelled() => return,
            }
            if claim
                .compare_exchange(PENDING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                f();
            }
        });
        AfterCancel {
            state,
            task: task.abort_handle(),
        }
    }

    /// Runs `fut` until it completes or this context is cancelled, whichever is
    /// first. On cancellation `fut` is dropped and the reason returned.
    ///
    /// This is how to bound any wait by a context (Go's `select` with
    /// `<-ctx.Done()`): `ctx.run(sem.acquire())`, `ctx.run(rx.recv())`,
    /// `ctx.run(tokio::time::sleep(d))`.
    ///
    /// ```
    /// use std::future::pending;
    /// use tokio_conc::context::{ContextError, TaskContext};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// assert_eq!(ctx.run(async { 5 }).await, Ok(5));
    /// ctx.cancel();
    /// assert_eq!(ctx.run(pending::<()>()).await, Err(ContextError::Cancelled));
    /// # }
    /// ```
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, ContextError> {
        tokio::select! {
            biased;
            () = self.cancelled() => Err(self.err().unwrap_or(ContextError::Cancelled)),
            out = fut => Ok(out),
        }
    }

    /// Runs `fut` with this context as [`TaskContext::current`], so code deep
    /// inside it can find the context without it being passed down.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_value("req-7");
    /// let seen = ctx
    ///     .scope(async { *TaskContext::current().unwrap().value::<&str>().unwrap() })
    ///     .await;
    /// assert_eq!(seen, "req-7");
    /// # }
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> TaskLocalFuture<TaskContext, F> {
        CURRENT.scope(self.clone(), fut)
    }

    /// The context made current by [`scope`](Self::scope) or
    /// [`spawn`](Self::spawn), if any.
    ///
    /// ```
    /// assert!(tokio_conc::context::TaskContext::current().is_none());
    /// ```
    pub fn current() -> Option<TaskContext> {
        CURRENT.try_with(TaskContext::clone).ok()
    }

    /// [`tokio::spawn`]s `fut` with this context current in the task and the task
    /// inside [`span`](Self::span). The task is not cancelled for you: pair it
    /// with [`run`](Self::run) or [`cancelled`](Self::cancelled) inside `fut`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_value(3_u8);
    /// let got = ctx.spawn(async { *TaskContext::current().unwrap().value::<u8>().unwrap() });
    /// assert_eq!(got.await.unwrap(), 3);
    /// # }
    /// ```
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current()
            .unwrap_or_else(|_| panic!("TaskContext::spawn must be called within a Tokio runtime"));
        handle.spawn(self.scope(fut).instrument(self.span()))
    }

    /// A `tracing` span named `ctx` whose `values` field lists every
    /// [`SpanValue`] of this context and its ancestors (nearest wins), e.g.
    /// `ctx{values=session_id=42}`.
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// let _guard = ctx.span().entered();
    /// tracing::info!("logged inside the context's span");
    /// ```
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("ctx", values = %SpanFields(self))
    }

    /// The text [`span`](Self::span) records: `FIELD=value` pairs separated by
    /// spaces, outermost first, each type once (the nearest value).
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// assert_eq!(ctx.span_fields(), "");
    /// ```
    pub fn span_fields(&self) -> String {
        SpanFields(self).to_string()
    }
}

pin_project! {
    /// The future of [`TaskContext::cancelled`]: completes when the context
    /// is cancelled or its deadline passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    /// let waiting = ctx.cancelled();
    /// waiting.await;
    /// assert!(ctx.is_cancelled());
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct CancelledFuture<'a> {
        ctx: &'a TaskContext,
        #[pin]
        token: WaitForCancellationFuture<'a>,
        // The deadline's timer, made on the first poll that needs it.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl Future for CancelledFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        poll_stopped(this.ctx, this.token, this.sleep, cx)
    }
}

/// Ready once `token` fires or `ctx`'s deadline passes, sleeping on a timer
/// of its own (made when first needed) rather than arming a task.
fn poll_stopped(
    ctx: &TaskContext,
    token: Pin<&mut impl Future<Output = ()>>,
    sleep: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if token.poll(cx).is_ready() {
        return Poll::Ready(());
    }
    let Some(deadline) = ctx.inner.deadline else {
        return Poll::Pending;
    };
    if ctx.deadline_passed() {
        return Poll::Ready(());
    }
    let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if sleep.as_mut().poll(cx).is_ready() {
        ctx.fire_deadline();
        return Poll::Ready(());
    }
    Poll::Pending
}

pin_project! {
    /// The future of [`TaskContext::cancelled_owned`]: [`CancelledFuture`]
    /// holding its own clone of the context.
    ///
    /// ```
    /// use tokio_conc::context::{CancelledOwned, TaskContext};
    ///
    /// struct Worker {
    ///     stop: std::pin::Pin<Box<CancelledOwned>>,
    /// }
    ///
    /// let ctx = TaskContext::background();
    /// let worker = Worker { stop: Box::pin(ctx.cancelled_owned()) };
    /// # drop(worker);
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct CancelledOwned {
        #[pin]
        token: WaitForCancellationFutureOwned,
        ctx: TaskContext,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl Future for CancelledOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        poll_stopped(this.ctx, this.token, this.sleep, cx)
    }
}

impl fmt::Debug for CancelledOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelledOwned")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CancelledFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelledFuture")
            .field("ctx", self.ctx)
            .finish_non_exhaustive()
    }
}

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

/// The registration made by [`TaskContext::after_cancel`] (Go's `AfterFunc`
/// and its `stop` function).
///
/// Dropping it leaves the registration in place; see
/// [`after_cancel`](TaskContext::after_cancel).
///
/// ```
/// use tokio_conc::context::TaskContext;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = TaskContext::background();
/// let guard = ctx.after_cancel(|| println!("cleaning up"));
/// assert!(guard.stop());
/// assert!(!guard.stop(), "already stopped");
/// # }
/// ```
pub struct AfterCancel {
    state: Arc<AtomicU8>,
    task: AbortHandle,
}

impl AfterCancel {
    /// Unregisters the function: `true` if this prevented the call, `false`
    /// if it had already started (the context stopped) or been stopped
    /// before. A `true` also ends the waiting task at once.
    ///
    /// ```
    /// use tokio_conc::context::TaskContext;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let guard = ctx.after_cancel(move || { let _ = tx.send(()); });
    /// ctx.cancel();
    /// rx.await.unwrap();
    /// assert!(!guard.stop(), "too late: it ran");
    /// # }
    /// ```
    pub fn stop(&self) -> bool {
        let stopped = self
            .state
            .compare_exchange(PENDING, STOPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if stopped {
            self.task.abort();
        }
        stopped
    }
}

impl fmt::Debug for AfterCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            PENDING => "pending",
            STARTED => "started",
            _ => "stopped",
        };
        f.debug_struct("AfterCancel")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

struct SpanFields<'a>(&'a TaskContext);

impl fmt::Display for SpanFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut logged: Vec<&Value> = Vec::new();
        for value in self.0.ancestry().filter_map(|ctx| ctx.inner.value.as_ref()) {
            if value.render.is_some() && logged.iter().all(|v| v.type_id != value.type_id) {
                logged.push(value);
            }
        }
        for (i, value) in logged.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if let Some(render) = value.render {
                render(value.value.as_ref(), f)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.deadline())
            .field("values", &self.span_fields())
            .finish_non_exhaustive()
    }
}

impl Default for TaskContext {
    /// The same as [`TaskContext::background`].
    fn default() -> Self {
        TaskContext::background()
    }
}

/// A root context cancelled when `token` is. Cancelling the context does not
/// cancel `token`: the context is a child scope of it.
///
/// ```
/// use tokio_conc::context::TaskContext;
/// use tokio_util::sync::CancellationToken;
///
/// let token = CancellationToken::new();
/// let ctx = TaskContext::from(token.clone());
/// token.cancel();
/// assert!(ctx.is_cancelled());
/// ```
impl From<CancellationToken> for TaskContext {
    fn from(token: CancellationToken) -> Self {
        TaskContext::node(None, false, token.child_token(), None, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn context_is_send_sync_clone_debug() {
        assert_send_sync::<TaskContext>();
        assert_send_sync::<ContextError>();
        let ctx = TaskContext::background();
        assert_send(&ctx.cancelled());
        assert_send(&ctx.run(async {}));
    }

    #[test]
    fn past_deadline_needs_no_runtime() {
        let ctx = TaskContext::background().with_timeout(Duration::ZERO);
        assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
        assert!(ctx.token().is_cancelled());
    }

    #[test]
    fn a_future_deadline_needs_no_runtime_until_its_token_is_taken() {
        let ctx = TaskContext::background().with_timeout(Duration::from_secs(60));
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.err(), None);
        let child = ctx.child().with_value(1_u8);
        assert_eq!(child.deadline(), ctx.deadline());
    }

    #[test]
    #[should_panic(
        expected = "TaskContext::token on a context with a deadline must be called within a Tokio runtime"
    )]
    fn a_future_deadlines_token_outside_a_runtime_panics_clearly() {
        let _ = TaskContext::background()
            .with_timeout(Duration::from_secs(1))
            .token();
    }

    #[test]
    #[should_panic(expected = "TaskContext::after_cancel must be called within a Tokio runtime")]
    fn after_cancel_outside_a_runtime_panics_clearly() {
        let _ = TaskContext::background().after_cancel(|| {});
    }

    #[test]
    fn a_huge_timeout_is_no_deadline() {
        let ctx = TaskContext::background().with_timeout(Duration::MAX);
        assert_eq!(ctx.deadline(), None);
    }
}
