//! `ContextLayer` in isolation: a `tower::service_fn` behind it, on paused
//! time — the request's context, its id, its deadline, and when it stops.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{DropCount, alive_tasks, within};
use http::header::HeaderName;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_conc::prelude::*;
use tokio_conc::service::{ContextLayer, RequestId};
use tower::{Layer, Service, ServiceExt, service_fn};

type Reply = Result<Response<String>, Infallible>;

/// A handler that reports its context on `seen`, then does what `then` says.
fn reporting<F, Fut>(
    seen: mpsc::UnboundedSender<TaskContext>,
    then: F,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
where
    F: Fn(TaskContext) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    service_fn(move |_req: Request<()>| {
        let seen = seen.clone();
        let then = then.clone();
        async move {
            let ctx =
                TaskContext::current().expect("the layer makes the request's context current");
            seen.send(ctx.clone()).unwrap();
            then(ctx).await
        }
    })
}

async fn forever(_ctx: TaskContext) -> Reply {
    std::future::pending().await
}

async fn ok(_ctx: TaskContext) -> Reply {
    Ok(Response::new("ok".into()))
}

fn request_with_id(id: &str) -> Request<()> {
    Request::builder()
        .header("x-request-id", id)
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_the_timeout_is_dropped_and_answered_504() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    let handler = reporting(seen, move |_ctx| {
        let guard = DropCount(counter.clone());
        async move {
            let _guard = guard;
            std::future::pending::<Reply>().await
        }
    });
    let service = ContextLayer::new()
        .timeout(Duration::from_secs(2))
        .layer(handler);

    let start = Instant::now();
    let response = within(
        "the timed-out request",
        service.oneshot(request_with_id("t-1")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(response.headers()["x-request-id"], "t-1");
    assert!(response.body().get_ref().is_empty());
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the handler was dropped");

    let ctx = contexts.recv().await.unwrap();
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
    assert_eq!(ctx.deadline(), Some(start + Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_status_can_be_chosen_and_a_prompt_handler_is_untouched() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = ContextLayer::new()
        .timeout(Duration::from_secs(1))
        .timeout_status(StatusCode::REQUEST_TIMEOUT)
        .layer(reporting(seen.clone(), forever));
    let response = within("the timed-out request", service.oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);

    let quick = ContextLayer::new()
        .timeout(Duration::from_secs(1))
        .layer(reporting(seen, |_ctx| async {
            tokio::time::sleep(Duration::from_millis(999)).await;
            Ok(Response::new("in time".into()))
        }));
    let response = within("the prompt request", quick.oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().get_ref(), "in time");
    drop(contexts.recv().await);
    let ctx = contexts.recv().await.unwrap();
    assert!(!ctx.is_cancelled(), "the response has not been sent yet");
    drop(response);
    assert_eq!(
        ctx.err(),
        Some(ContextError::Cancelled),
        "the exchange is over"
    );
}

/// A request with a timeout whose handler waits costs no task: the layer
/// waits on the context's deadline itself instead of asking for its token
/// (a token arms the deadline's timer task, one spawn per request).
#[tokio::test(start_paused = true)]
async fn a_waiting_handler_with_a_timeout_spawns_no_task() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = ContextLayer::new()
        .timeout(Duration::from_secs(5))
        .layer(reporting(seen, |_ctx| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Response::new("later".into()))
        }));
    let baseline = alive_tasks();
    let mut response = pin!(service.oneshot(Request::new(())));
    assert!(futures::poll!(response.as_mut()).is_pending());
    let _ctx = contexts.recv().await.unwrap();
    assert_eq!(
        alive_tasks(),
        baseline,
        "no task for the request's deadline"
    );
    let response = within("the request", response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The server drops the response future when the client goes away: the
/// request's context is cancelled, and what the handler started stops.
#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_cancels_the_request_and_its_work() {
    let baseline = alive_tasks();
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let stopped = Arc::new(AtomicUsize::new(0));
    let counter = stopped.clone();
    let handler = reporting(seen, move |ctx| {
        let counter = counter.clone();
        async move {
            // Work on a task of its own, bound to the request's context.
            for _ in 0..3 {
                let counter = counter.clone();
                ctx.spawn(async move {
                    let me = TaskContext::current().unwrap();
                    me.cancelled().await;
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
            forever(ctx).await
        }
    });
    let mut service = ContextLayer::new().layer(handler);
    let service = within("poll_ready", service.ready()).await.unwrap();
    let mut pending = Box::pin(service.call(request_with_id("gone")));
    assert!(futures::poll!(pending.as_mut()).is_pending());
    let ctx = contexts.recv().await.unwrap();
    assert_eq!(ctx.value::<RequestId>().unwrap().as_str(), "gone");
    assert!(!ctx.is_cancelled());

    drop(pending); // the client went away
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
    common::until("the spawned work stopped", || {
        stopped.load(Ordering::SeqCst) == 3
    })
    .await;
    common::until("every task ended", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_root_reaches_every_request_in_flight() {
    let root = TaskContext::background();
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = ContextLayer::new()
        .context(&root)
        .layer(reporting(seen, forever));
    let first = tokio::spawn(service.clone().oneshot(request_with_id("a")));
    let second = tokio::spawn(service.oneshot(request_with_id("b")));
    let a = within("first request", contexts.recv()).await.unwrap();
    let b = within("second request", contexts.recv()).await.unwrap();

    root.cancel_with(std::io::Error::other("going away"));
    for response in [first, second] {
        let response = within("a request of a cancelled root", response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    for ctx in [a, b] {
        let err = ctx.err().unwrap();
        assert_eq!(err.cause().unwrap().to_string(), "going away");
    }
}

#[tokio::test(start_paused = true)]
async fn the_root_is_the_ambient_context_at_construction_and_its_deadline_holds() {
    let root = TaskContext::background().with_timeout(Duration::from_secs(1));
    let layer = root.scope(async { ContextLayer::new() }).await;
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = layer
        .timeout(Duration::from_secs(60))
        .layer(reporting(seen, forever));
    let response = within("the request", service.oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::GATEWAY_TIMEOUT,
        "the root's earlier deadline wins"
    );
    let ctx = contexts.recv().await.unwrap();
    assert_eq!(ctx.deadline(), root.deadline());
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn request_ids_are_taken_or_generated_and_travel_everywhere() {
    let service = ContextLayer::new().layer(service_fn(|req: Request<()>| async move {
        let from_extensions = req.extensions().get::<RequestId>().unwrap().clone();
        let ctx = TaskContext::current().unwrap();
        let current = RequestId::current().unwrap();
        assert_eq!(from_extensions, current);
        assert_eq!(ctx.value::<RequestId>(), Some(&current));
        assert_eq!(ctx.span_fields(), format!("request_id={current}"));
        Ok::<_, Infallible>(Response::new(current.to_string()))
    }));

    let response = service
        .clone()
        .oneshot(request_with_id("given-7"))
        .await
        .unwrap();
    assert_eq!(response.body().get_ref(), "given-7");
    assert_eq!(response.headers()["x-request-id"], "given-7");

    let mut generated = Vec::new();
    for request in [
        Request::new(()),
        request_with_id("has spaces"),
        request_with_id(""),
    ] {
        let response = service.clone().oneshot(request).await.unwrap();
        let id = response.body().get_ref().clone();
        assert_eq!(response.headers()["x-request-id"], id.as_str());
        assert!(
            id.contains('-') && !id.contains(' ') && !id.is_empty(),
            "{id}"
        );
        generated.push(id);
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "every generated id is new");
}

#[tokio::test(start_paused = true)]
async fn the_header_can_be_renamed_and_a_handler_header_is_kept() {
    let service = ContextLayer::new()
        .request_id_header(HeaderName::from_static("x-trace"))
        .layer(service_fn(|_req: Request<()>| async {
            let id = RequestId::current().unwrap();
            let mut response = Response::new(id.to_string());
            if id.as_str() == "mine" {
                response
                    .headers_mut()
                    .insert("x-trace", "set-by-handler".parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        }));
    let request = Request::builder()
        .header("x-trace", "t-9")
        .header("x-request-id", "ignored")
        .body(())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.body().get_ref(), "t-9");
    assert_eq!(response.headers()["x-trace"], "t-9");
    assert!(response.headers().get("x-request-id").is_none());

    let request = Request::builder()
        .header("x-trace", "mine")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-trace"], "set-by-handler");
}

/// The context lives until the body has been sent: a streaming body keeps
/// its work running, and the end of the body ends the request.
#[tokio::test(start_paused = true)]
async fn the_context_ends_when_the_body_has_been_sent() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = ContextLayer::new().layer(reporting(seen, |_ctx| async {
        Ok(Response::new("a body".to_string()))
    }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    let ctx = contexts.recv().await.unwrap();
    let body = response.into_body();
    assert!(body.task_context().is_some());
    assert!(!ctx.is_cancelled());
    let mut body = pin!(body);
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap().as_ref(), b"a body");
    assert!(!ctx.is_cancelled(), "not known to be over yet");
    assert!(body.frame().await.is_none());
    assert!(ctx.is_cancelled(), "the body ended: the exchange is over");
    assert!(body.task_context().is_none());
}

/// With `shutdown(..)`, requests are tracked tasks: the drain waits for
/// them, and one stuck past the grace period is named and answered 503.
#[tokio::test(start_paused = true)]
async fn a_shutdown_waits_for_requests_and_names_the_stuck_one() {
    let shutdown = Shutdown::new();
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let service = ContextLayer::new().shutdown(&shutdown).layer(reporting(
        seen,
        |ctx: TaskContext| async move {
            match ctx.value::<RequestId>().unwrap().as_str() {
                "stuck" => std::future::pending().await,
                _ => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    ok(ctx).await
                }
            }
        },
    ));
    // As a server would: each response is sent (its body read) at once.
    let send = |request: Request<()>| {
        let service = service.clone();
        tokio::spawn(async move {
            let response = service.oneshot(request).await.unwrap();
            let status = response.status();
            response.into_body().collect().await.unwrap();
            status
        })
    };
    let polite = send(request_with_id("polite"));
    let stuck = send(
        Request::builder()
            .uri("/export?secret=1")
            .header("x-request-id", "stuck")
            .body(())
            .unwrap(),
    );
    let first = within("first request", contexts.recv()).await.unwrap();
    let second = within("second request", contexts.recv()).await.unwrap();
    assert_eq!(
        shutdown.running(),
        1,
        "only the layer's watcher until the drain"
    );

    shutdown.trigger();
    common::until("the requests were handed over", || shutdown.running() == 2).await;
    let report = within("the shutdown", shutdown.wait(Duration::from_secs(5))).await;
    assert_eq!(report.aborted(), ["GET /export request_id=stuck"]);

    assert_eq!(
        polite.await.unwrap(),
        StatusCode::OK,
        "finished during the drain"
    );
    let stuck = within("the stuck request", stuck).await.unwrap();
    assert_eq!(stuck, StatusCode::SERVICE_UNAVAILABLE);
    assert!(first.is_cancelled() && second.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_waits_for_the_bodies_too() {
    let shutdown = Shutdown::new();
    let service =
        ContextLayer::new()
            .shutdown(&shutdown)
            .layer(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new("done".to_string()))
            }));
    let before = service.clone().oneshot(Request::new(())).await.unwrap();
    shutdown.trigger();
    assert_eq!(shutdown.running(), 1, "the layer's watcher");
    // The watcher runs: it hands the request over to the shutdown, and ends.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(shutdown.running(), 1, "the request in flight");
    let during = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        shutdown.running(),
        2,
        "a request during the drain is tracked at once"
    );

    let wait = tokio::spawn(shutdown.wait(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!wait.is_finished(), "the bodies are not sent yet");
    for response in [before, during] {
        let collected = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(collected.as_ref(), b"done");
    }
    let report = within("the shutdown", wait).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.drain_time(), Duration::from_millis(5001));
}
