//! The per-request half of [`ContextLayer`](super::ContextLayer): the
//! [`ResponseFuture`] that runs the handler, and the [`ContextBody`] that
//! carries the request's context until the response has been sent.
//!
//! Invariants:
//!
//! * One [`Exchange`] per request, created in `call`. It moves from the
//!   response future into the response body; whoever drops it — the future
//!   dropped before it finished (the client went away), or the body, once
//!   sent in full or dropped — cancels the request's context. So the context
//!   is cancelled exactly when the exchange ends, never before, and always.
//! * The handler's future is polled first; the context is consulted only
//!   when the handler is pending. A handler that finishes in the same poll
//!   in which its context stops wins.
//! * Once the context has stopped, the handler's future is dropped at once
//!   (it never runs again) and the layer's own answer goes out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;

use super::Config;
use super::request_id::RequestId;
use super::tracking::Ticket;
use crate::context::{CancelledOwned, TaskContext};

/// A request in progress: its context, and (when the layer tracks requests
/// for a [`Shutdown`](crate::shutdown::Shutdown)) its ticket in the
/// registry. Dropping it ends the request.
pub(super) struct Exchange {
    pub(super) ctx: TaskContext,
    pub(super) ticket: Option<Ticket>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Go's r.Context(): cancelled when the exchange is over, whether the
        // response went out or the client left. The ticket, dropped right
        // after, takes the request out of the shutdown's sight.
        self.ctx.cancel();
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("ctx", &self.ctx)
            .field("tracked", &self.ticket.is_some())
            .finish()
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F> {
        Running { #[pin] handler: Instrumented<TaskLocalFuture<TaskContext, F>> },
        Done,
    }
}

pin_project! {
    /// The response future of a [`ContextService`](super::ContextService):
    /// the inner service's future, run with the request's context current
    /// and inside its span, and given up with a status of the layer's own
    /// when that context stops first.
    ///
    /// Dropping it before it finishes — what a server does when the client
    /// goes away — cancels the request's context.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // Made only once the handler has been pending: most answer at once.
        // The context's own wait, not its token: a token would spawn the
        // deadline's timer task for every request with a timeout.
        #[pin]
        stopped: Option<CancelledOwned>,
        exchange: Option<Exchange>,
        request_id: RequestId,
        config: Arc<Config>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        handler: Instrumented<TaskLocalFuture<TaskContext, F>>,
        exchange: Exchange,
        request_id: RequestId,
        config: Arc<Config>,
    ) -> Self {
        ResponseFuture {
            state: State::Running { handler },
            stopped: None,
            exchange: Some(exchange),
            request_id,
            config,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<ContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StateProj::Running { handler } = this.state.as_mut().project() else {
            panic!("ContextLayer's ResponseFuture polled after it completed");
        };
        if let Poll::Ready(output) = handler.poll(cx) {
            this.state.project_replace(State::Done);
            let exchange = this.exchange.take();
            return Poll::Ready(
                output.map(|response| respond(response, exchange, this.request_id, this.config)),
            );
        }
        if this.stopped.is_none() {
            let stopped = match this.exchange {
                Some(exchange) => exchange.ctx.cancelled_owned(),
                None => unreachable!("the exchange is taken only when the future completes"),
            };
            this.stopped.set(Some(stopped));
        }
        let stopped = this.stopped.as_mut().as_pin_mut();
        ready!(stopped.expect("set above").poll(cx));
        // The request's context stopped while the handler was still at work:
        // drop the handler (in its scope, so its destructors see the context)
        // and answer for it.
        this.state.project_replace(State::Done);
        let exchange = this.exchange.take();
        let status = match exchange.as_ref().and_then(|e| e.ctx.err()) {
            Some(err) if err.is_deadline_exceeded() => this.config.timeout_status,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        Poll::Ready(Ok(respond(
            response,
            exchange,
            this.request_id,
            this.config,
        )))
    }
}

/// The handler's (or the layer's) response, with the request id header and
/// the exchange moved into its body.
fn respond<B>(
    response: Response<B>,
    exchange: Option<Exchange>,
    request_id: &RequestId,
    config: &Config,
) -> Response<ContextBody<B>> {
    let mut response = response.map(|inner| ContextBody { inner, exchange });
    response
        .headers_mut()
        .entry(&config.header)
        .or_insert_with(|| request_id.header_value().clone());
    response
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("request_id", &self.request_id)
            .field("running", &matches!(self.state, State::Running { .. }))
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The body of a response that went through a
    /// [`ContextLayer`](super::ContextLayer): the handler's body, unchanged,
    /// holding the request's context until it has been sent in full (or
    /// dropped), when the context is cancelled — so a streaming body built
    /// from operators bound to the request's context keeps running while it
    /// is sent, and stops when the client goes away.
    pub struct ContextBody<B> {
        #[pin]
        inner: B,
        exchange: Option<Exchange>,
    }
}

impl<B> ContextBody<B> {
    /// The handler's body.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tokio_conc::service::ContextLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let service = ContextLayer::new().layer(service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new("hello"))
    /// }));
    /// let response = service.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(*response.body().get_ref(), "hello");
    /// # }
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The request's context, until the body has been sent in full. `None`
    /// after that.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tokio_conc::service::ContextLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let service = ContextLayer::new().layer(service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::new()))
    /// }));
    /// let response = service.oneshot(http::Request::new(())).await.unwrap();
    /// let ctx = response.body().task_context().unwrap().clone();
    /// assert!(!ctx.is_cancelled(), "the response is not sent yet");
    /// drop(response);
    /// assert!(ctx.is_cancelled(), "the exchange is over");
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.exchange.as_ref().map(|e| &e.ctx)
    }
}

impl<B: Body> Body for ContextBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // Sent in full, or failed: the exchange is over.
            this.exchange.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for ContextBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextBody")
            .field("inner", &self.inner)
            .field("exchange", &self.exchange)
            .finish()
    }
}
