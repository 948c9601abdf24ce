//! Services (feature `tower`): [`ContextLayer`] gives every HTTP request its
//! own [`TaskContext`] — Go's `r.Context()` for tower and axum.
//!
//! For each request the layer makes a context under a root (a
//! [`Shutdown`]'s context, or one of your own), with
//!
//! * the request's [`RequestId`] — taken from a header (`x-request-id` unless
//!   configured) or generated — as a value and a [span field](crate::context::SpanValue),
//!   also put into the request's extensions and into the response's headers;
//! * an optional deadline ([`timeout`](ContextLayer::timeout)).
//!
//! The handler's future runs with that context as [`TaskContext::current`]
//! and inside the context's [span](TaskContext::span), so any code deep in a
//! handler finds it, every operator built there without `.context(..)` binds
//! to it (the crate's ambient-context rule), and every log line carries
//! `request_id=…`.
//!
//! # When the request's context stops
//!
//! | what happens | the context | the response |
//! |---|---|---|
//! | the response has been sent in full (its body ended) | cancelled ([`ContextError::Cancelled`]) | — |
//! | the client goes away: the server drops the response future or the body | cancelled ([`ContextError::Cancelled`]) | — |
//! | the [timeout](ContextLayer::timeout) passes first | [`ContextError::DeadlineExceeded`] | the handler is dropped; **504 Gateway Timeout** (or [`timeout_status`](ContextLayer::timeout_status)) |
//! | the root is cancelled (a shutdown's abort phase), or the request's context is cancelled some other way | the root's cause (or `Cancelled`) | the handler is dropped; **503 Service Unavailable** |
//!
//! Like Go's `r.Context()`, the context ends with the exchange: work it
//! started that should outlive the response needs a context of its own (the
//! shutdown's, say). Unlike Go, the exchange includes a streaming body: the
//! context lives until the body is sent, so a stream built in the handler
//! keeps running while it is sent.
//!
//! **Why 504.** A handler that runs out of time is a server that could not
//! answer in time: 504 says so. 408 would tell the client that *it* was too
//! slow to send its request (and some clients retry a 408 by themselves);
//! Go's `http.TimeoutHandler` answers 503. The timeout and stop responses
//! have an empty body (`ResBody::default()`), the request id header, and
//! nothing else.
//!
//! # Tracking requests for a shutdown
//!
//! With [`shutdown(&shutdown)`](ContextLayer::shutdown), the root is the
//! shutdown's context and the requests in flight are the shutdown's
//! business: once it drains, each is a tracked task named
//! `"GET /path request_id=…"` that ends with its exchange. So
//! [`Shutdown::wait`] waits for them, and a handler stuck past the grace
//! period is named in the report (then the abort phase cancels its context,
//! and the client gets a 503). While the service runs this costs a map
//! insert and remove per request; the tasks are spawned only when the drain
//! begins, by one tracked task of the layer's, named `ContextLayer`, started
//! with the first request (so [`Shutdown::wait`] waits for a trigger from
//! then on, rather than for every tracked task to end).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tokio_conc::prelude::*;
//! use tokio_conc::service::{ContextLayer, RequestId};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! async fn handler(_req: Request<()>) -> Result<Response<String>, Infallible> {
//!     let ctx = TaskContext::current().expect("the layer makes it current");
//!     let id = ctx.value::<RequestId>().expect("and gives it the request id");
//!     Ok(Response::new(format!("hello, request {id}")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = ContextLayer::new().timeout(Duration::from_secs(5));
//! let service = layer.layer(service_fn(handler));
//!
//! let request = Request::builder().header("x-request-id", "abc").body(()).unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["x-request-id"], "abc");
//! assert_eq!(response.body().get_ref(), "hello, request abc");
//! # }
//! ```
//!
//! With axum, `Router::new().route(..).layer(ContextLayer::new())`; see
//! `examples/service.rs` and the *Services* page of the docs.
//!
//! [`Shutdown::wait`]: crate::shutdown::Shutdown::wait
//! [`ContextError::Cancelled`]: crate::ContextError::Cancelled
//! [`ContextError::DeadlineExceeded`]: crate::ContextError::DeadlineExceeded

mod future;
mod request_id;
mod tracking;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::HeaderName;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

pub use future::{ContextBody, ResponseFuture};
pub use request_id::RequestId;

use self::future::Exchange;
use self::tracking::Tracking;
use crate::context::TaskContext;
use crate::shutdown::Shutdown;

/// The header a request id is read from and written to unless
/// [`request_id_header`](ContextLayer::request_id_header) says otherwise.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What a layer and its services share.
#[derive(Clone)]
struct Config {
    /// `None`: each request's context is a root of its own.
    root: Option<TaskContext>,
    timeout: Option<Duration>,
    header: HeaderName,
    timeout_status: StatusCode,
    tracking: Option<Arc<Tracking>>,
}

/// A [`tower` layer](Layer) that gives every HTTP request its own
/// [`TaskContext`]: Go's `r.Context()`, `http.TimeoutHandler` and a request
/// id in one. See the [module docs](self) for what the context holds and
/// when it stops.
///
/// The root of the requests' contexts is, in order: the one given to
/// [`context`](Self::context) (or [`shutdown`](Self::shutdown)); else
/// [`TaskContext::current`] when the layer is built (the crate's ambient
/// rule); else none — each request's context is then a root of its own.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tokio_conc::prelude::*;
/// use tokio_conc::service::ContextLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let root = TaskContext::background();
/// let service = ContextLayer::new().context(&root).layer(service_fn(|_req: Request<()>| async {
///     let ctx = TaskContext::current().unwrap();
///     Ok::<_, Infallible>(Response::new(ctx.span_fields()))
/// }));
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert!(response.body().get_ref().starts_with("request_id="));
/// # }
/// ```
#[derive(Clone)]
pub struct ContextLayer {
    config: Config,
}

impl ContextLayer {
    /// A layer with no timeout, request ids in `x-request-id`, and as root
    /// [`TaskContext::current`] if there is one (each request a root of its
    /// own otherwise).
    ///
    /// ```
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let layer = ContextLayer::new();
    /// assert!(layer.task_context().is_none());
    /// assert_eq!(layer.request_timeout(), None);
    /// assert_eq!(layer.request_id_header_name(), "x-request-id");
    /// ```
    pub fn new() -> Self {
        ContextLayer {
            config: Config {
                root: TaskContext::current(),
                timeout: None,
                header: REQUEST_ID_HEADER,
                timeout_status: StatusCode::GATEWAY_TIMEOUT,
                tracking: None,
            },
        }
    }

    /// Makes each request's context a child of `ctx`: cancelling `ctx`
    /// cancels every request in flight (they are answered 503).
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let root = TaskContext::background();
    /// let layer = ContextLayer::new().context(&root);
    /// assert!(layer.task_context().is_some());
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.config.root = Some(ctx.clone());
        self
    }

    /// Serves the requests of `shutdown`'s service: their contexts are
    /// children of [`shutdown.context()`](Shutdown::context) (as with
    /// [`context`](Self::context)), and once the shutdown drains each
    /// request in flight is a tracked task of it, named
    /// `"METHOD /path request_id=…"`, until its exchange ends — so
    /// [`Shutdown::wait`] waits for the requests in flight and names those
    /// that outlive the grace period. See the [module docs](self#tracking-requests-for-a-shutdown)
    /// for the cost. The layer keeps a handle of the shutdown.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let shutdown = Shutdown::new();
    /// let layer = ContextLayer::new().shutdown(&shutdown);
    /// assert!(layer.task_context().is_some());
    /// ```
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.config.root = Some(shutdown.context().clone());
        self.config.tracking = Some(Arc::new(Tracking::new(shutdown)));
        self
    }

    /// Gives each request `timeout` to answer: its context gets the deadline
    /// (the earlier of it and the root's), and a handler still at work then
    /// is dropped and answered with a 504 (see
    /// [`timeout_status`](Self::timeout_status)) — Go's
    /// `http.TimeoutHandler`. The deadline is the context's own
    /// ([`TaskContext::with_timeout`]), whose timer is a small task per
    /// request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let layer = ContextLayer::new().timeout(Duration::from_secs(10));
    /// assert_eq!(layer.request_timeout(), Some(Duration::from_secs(10)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// The status answered when a request's deadline passes before its
    /// handler answers: 504 Gateway Timeout unless set here (503, say, as Go's
    /// `http.TimeoutHandler` answers; or 408).
    ///
    /// ```
    /// use http::StatusCode;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let layer = ContextLayer::new().timeout_status(StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(layer.request_timeout_status(), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn timeout_status(mut self, status: StatusCode) -> Self {
        self.config.timeout_status = status;
        self
    }

    /// The header the request id is taken from (when the request has a sane
    /// one: see [`RequestId`]) and sent back in; `x-request-id` unless set.
    ///
    /// ```
    /// use http::header::HeaderName;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// let layer = ContextLayer::new().request_id_header(HeaderName::from_static("x-trace-id"));
    /// assert_eq!(layer.request_id_header_name(), "x-trace-id");
    /// ```
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.config.header = header;
        self
    }

    /// The root of the requests' contexts, if there is one.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::service::ContextLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let inherited = ctx.scope(async { ContextLayer::new() }).await;
    /// assert!(inherited.task_context().is_some(), "the ambient context at construction");
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.config.root.as_ref()
    }

    /// The per-request timeout, if one is set.
    ///
    /// ```
    /// assert_eq!(tokio_conc::service::ContextLayer::new().request_timeout(), None);
    /// ```
    pub fn request_timeout(&self) -> Option<Duration> {
        self.config.timeout
    }

    /// The status answered on a timeout.
    ///
    /// ```
    /// use tokio_conc::service::ContextLayer;
    /// assert_eq!(ContextLayer::new().request_timeout_status(), http::StatusCode::GATEWAY_TIMEOUT);
    /// ```
    pub fn request_timeout_status(&self) -> StatusCode {
        self.config.timeout_status
    }

    /// The request id header.
    ///
    /// ```
    /// use tokio_conc::service::{ContextLayer, REQUEST_ID_HEADER};
    /// assert_eq!(ContextLayer::new().request_id_header_name(), REQUEST_ID_HEADER);
    /// ```
    pub fn request_id_header_name(&self) -> &HeaderName {
        &self.config.header
    }
}

impl Default for ContextLayer {
    /// The same as [`ContextLayer::new`].
    fn default() -> Self {
        ContextLayer::new()
    }
}

impl fmt::Debug for ContextLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextLayer")
            .field("root", &self.root)
            .field("timeout", &self.timeout)
            .field("header", &self.header)
            .field("timeout_status", &self.timeout_status)
            .field("tracks_requests", &self.tracking.is_some())
            .finish()
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// The service a [`ContextLayer`] wraps around another: each request runs
/// in a context of its own. Cloning it is cheap (the configuration is
/// shared).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tokio_conc::service::{ContextLayer, RequestId};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ContextLayer::new().layer(service_fn(|req: Request<()>| async move {
///     // The id is in the request's extensions too.
///     let id = req.extensions().get::<RequestId>().unwrap().clone();
///     Ok::<_, Infallible>(Response::new(id.to_string()))
/// }));
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.headers()["x-request-id"], response.body().get_ref().as_str());
/// # }
/// ```
#[derive(Clone)]
pub struct ContextService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ContextService<S> {
    /// The wrapped service.
    ///
    /// ```
    /// use tokio_conc::service::ContextLayer;
    /// use tower::Layer;
    ///
    /// let service = ContextLayer::new().layer(7_u8);
    /// assert_eq!(*service.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the wrapped service.
    ///
    /// ```
    /// use tokio_conc::service::ContextLayer;
    /// use tower::Layer;
    ///
    /// assert_eq!(ContextLayer::new().layer(7_u8).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ContextService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ContextBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let id = request
            .headers()
            .get(&config.header)
            .and_then(RequestId::from_header)
            .unwrap_or_else(RequestId::generate);
        let ctx = match &config.root {
            Some(root) => root.with_span_value(id.clone()),
            None => TaskContext::background().with_span_value(id.clone()),
        };
        let ctx = match config.timeout {
            Some(timeout) => ctx.with_timeout(timeout),
            None => ctx,
        };
        let ticket = config
            .tracking
            .as_ref()
            .map(|tracking| tracking.enter(&request, &id));
        request.extensions_mut().insert(id.clone());

        let span = ctx.span();
        // Services that work in `call` itself (not only in the future) log
        // inside the span too.
        let handler = span.in_scope(|| self.inner.call(request));
        let handler = ctx.scope(handler).instrument(span);
        let exchange = Exchange { ctx, ticket };
        ResponseFuture::new(handler, exchange, id, Arc::clone(&self.config))
    }
}
