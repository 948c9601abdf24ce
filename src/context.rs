//! [`TaskContext`]: Go's `context.Context` for Tokio — cancellation, deadlines,
//! causes and request-scoped values in one cheap, clonable handle.
//!
//! A context is a node in a tree. Deriving one ([`child`](TaskContext::child),
//! [`with_timeout`](TaskContext::with_timeout), [`with_value`](TaskContext::with_value),
//! …) makes a new node under it: cancelling a node cancels its whole subtree and
//! never its parent or siblings. Values are looked up by type, walking from the
//! node towards the root, so a nearer value shadows a farther one.
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

use std::any::{Any, TypeId};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: TaskContext;
}

/// Why a [`TaskContext`] was stopped: what [`TaskContext::err`] and
/// [`TaskContext::run`] report.
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
    /// `WithCancelCause`).
    Cause(Arc<dyn Error + Send + Sync>),
}

impl ContextError {
    /// The cause given to [`TaskContext::cancel_with`], if that is how the context
    /// was stopped.
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

struct Inner {
    token: CancellationToken,
    parent: Option<TaskContext>,
    /// The effective deadline: the earlier of this node's own and its parent's.
    deadline: Option<Instant>,
    value: Option<Value>,
    /// Set (before the token is cancelled) by whoever cancels this very node.
    /// A node cancelled through an ancestor leaves it empty and reports the
    /// ancestor's cause.
    cause: OnceLock<ContextError>,
    /// The task that cancels this node at its own deadline. Dropping the
    /// context aborts it, so no timer outlives the contexts that need it.
    timer: OnceLock<AbortOnDropHandle<()>>,
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
        token: CancellationToken,
        deadline: Option<Instant>,
        value: Option<Value>,
    ) -> Self {
        TaskContext {
            inner: Arc::new(Inner {
                token,
                parent: parent.cloned(),
                deadline,
                value,
                cause: OnceLock::new(),
                timer: OnceLock::new(),
            }),
        }
    }

    fn derive(&self, deadline: Option<Instant>, value: Option<Value>) -> Self {
        TaskContext::node(Some(self), self.inner.token.child_token(), deadline, value)
    }

    /// A root context, cancelled only by its own [`cancel`](Self::cancel).
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// assert!(!ctx.is_cancelled());
    /// assert!(ctx.deadline().is_none());
    /// ```
    pub fn background() -> Self {
        TaskContext::node(None, CancellationToken::new(), None, None)
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
        self.derive(self.inner.deadline, None)
    }

    /// A child that cancels itself `timeout` from now, with the cause
    /// [`ContextError::DeadlineExceeded`]. If the parent's deadline is earlier,
    /// that one stays in force.
    ///
    /// The timer is a small task that lives as long as the context (or any
    /// clone of it, or any descendant) does; dropping them all removes it.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, unless the deadline has already passed.
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
        self.with_deadline(Instant::now() + timeout)
    }

    /// A child that cancels itself at `deadline` (the earlier of it and the
    /// parent's deadline), with the cause [`ContextError::DeadlineExceeded`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, unless the deadline has already passed.
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
        let inherited = self.inner.deadline;
        if inherited.is_some_and(|d| d <= deadline) {
            // The parent fires first and its cancellation reaches the child.
            return self.derive(inherited, None);
        }
        let ctx = self.derive(Some(deadline), None);
        if ctx.is_cancelled() {
            // Born cancelled through an ancestor: its cause stands, no timer needed.
            return ctx;
        }
        if deadline <= Instant::now() {
            ctx.cancel_because(ContextError::DeadlineExceeded);
            return ctx;
        }
        let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("TaskContext::with_deadline/with_timeout must be called within a Tokio runtime")
        });
        let token = ctx.inner.token.clone();
        let weak: Weak<Inner> = Arc::downgrade(&ctx.inner);
        let timer = handle.spawn(async move {
            tokio::select! {
                biased;
                () = token.cancelled() => {}
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(inner) = weak.upgrade() {
                        (TaskContext { inner }).cancel_because(ContextError::DeadlineExceeded);
                    }
                }
            }
        });
        let _ = ctx.inner.timer.set(AbortOnDropHandle::new(timer));
        ctx
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
        self.derive(self.inner.deadline, Some(value))
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
        self.derive(self.inner.deadline, Some(value))
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

    /// Cancels this context and all its descendants, with the cause
    /// [`ContextError::Cancelled`]. Never touches the parent or siblings.
    /// Cancelling an already cancelled context changes nothing.
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
        if self.inner.token.is_cancelled() {
            return;
        }
        // The cause goes in before the token fires, so anyone woken by the
        // token already sees it.
        let _ = self.inner.cause.set(reason);
        self.inner.token.cancel();
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
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Completes when this context is cancelled. Cancel-safe: use it freely in
    /// `select!`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// ctx.cancel();
    /// ctx.cancelled().await;
    /// # }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// `None` while the context is live; once cancelled, why: the cause of the
    /// nearest context (this one or an ancestor) that was cancelled directly.
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
        if !self.is_cancelled() {
            return None;
        }
        let reason = self
            .ancestry()
            .find_map(|ctx| ctx.inner.cause.get())
            .cloned()
            // Cancelled through the CancellationToken this context was made from.
            .unwrap_or(ContextError::Cancelled);
        Some(reason)
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
    /// one. It fires when the context is cancelled, by hand or at its deadline.
    /// Cancelling the token cancels the context (with [`ContextError::Cancelled`]).
    ///
    /// ```
    /// let ctx = tokio_conc::context::TaskContext::background();
    /// let token = ctx.token();
    /// ctx.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Runs `fut` until it completes or this context is cancelled, whichever is
    /// first. On cancellation `fut` is dropped and the reason returned.
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
        TaskContext::node(None, token.child_token(), None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug + 'static>() {}

    #[test]
    fn context_is_send_sync_clone_debug() {
        assert_send_sync::<TaskContext>();
        assert_send_sync::<ContextError>();
    }

    #[test]
    fn past_deadline_needs_no_runtime() {
        let ctx = TaskContext::background().with_timeout(Duration::ZERO);
        assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
    }

    #[test]
    #[should_panic(
        expected = "TaskContext::with_deadline/with_timeout must be called within a Tokio runtime"
    )]
    fn future_deadline_outside_runtime_panics_clearly() {
        let _ = TaskContext::background().with_timeout(Duration::from_secs(1));
    }
}
