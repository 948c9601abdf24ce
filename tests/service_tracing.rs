//! The log lines of a handler behind `ContextLayer` carry the request id. A
//! binary of its own, with one test: tracing's interest cache is
//! process-global, and a test capturing logs next to others could flake.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_conc::prelude::*;
use tokio_conc::service::ContextLayer;

async fn handler() -> &'static str {
    tracing::info!("handling");
    // Work the handler hands to a pool bound to its context logs under the
    // request id too.
    let ctx = TaskContext::current().expect("the layer makes it current");
    let done = futures::stream::iter(0..2)
        .par_map_unordered(
            Workers::new(2).context(&ctx).name("helpers"),
            |i| async move {
                tracing::info!(i, "helping");
            },
        )
        .count()
        .await;
    assert_eq!(done, 2);
    "ok"
}

/// The handler's event and its pool's events are inside the request's
/// context span, `ctx{values=request_id=…}`; a request without an id gets a
/// generated one, logged the same way.
#[tokio::test]
async fn a_handlers_logs_carry_the_request_id() {
    let (default, path) = common::log_to_file("service-tracing");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/", get(handler))
        .layer(ContextLayer::new());
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut generated = String::new();
    for id in [Some("trace-me-7"), None] {
        let exchange = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut request = Request::get("/").header(header::HOST, "localhost");
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            let response = sender
                .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let sent = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            response.into_body().collect().await.unwrap();
            sent
        };
        let sent = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the request hung");
        match id {
            Some(id) => assert_eq!(sent, id),
            None => generated = sent,
        }
    }
    server.abort();
    drop(default);

    let logs = common::read_logs(&path);
    for id in ["trace-me-7", generated.as_str()] {
        let field = format!("request_id={id}");
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&field)).collect();
        assert!(
            lines.iter().any(|l| l.contains("handling")),
            "the handler's event carries {field}: {logs}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains("helping")).count(),
            2,
            "the pool's events carry {field}: {logs}"
        );
    }
}
