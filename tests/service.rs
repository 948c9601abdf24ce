//! The service of `examples/service.rs` (and a few routes of the tests' own)
//! served on 127.0.0.1, port 0, and driven by real clients over loopback:
//! request ids, a client leaving mid-request, 429 and 503, and a shutdown
//! with requests in flight. Real time, bounded: a few dozen requests, every
//! wait under a limit that fails naming what hung.

#[allow(dead_code, clippy::all)]
#[path = "../examples/service.rs"]
mod example;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_conc::prelude::*;
use tokio_conc::service::{ContextLayer, RequestId};

/// Far longer than anything here should take: reaching it is a hang.
const HANG: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A response as a client sees it.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One GET on a connection of its own.
async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    within(&format!("GET {path}"), async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let mut request = Request::get(path).header(header::HOST, "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .expect("a response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, &[]).await
}

/// A request sent on a raw connection, which the caller drops to leave.
async fn leave_open(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Serves `router` without a shutdown of its own; aborted on drop.
async fn serve_plain(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, server)
}

/// The example's service with `config`, served until `shutdown` drains.
async fn serve_example(
    config: example::Config,
    shutdown: &Shutdown,
) -> (SocketAddr, Served, tokio::task::JoinHandle<()>) {
    let (router, app) = example::service(&config, shutdown);
    // Counts the requests that reached the service.
    let arrived = Arc::new(AtomicUsize::new(0));
    let counter = arrived.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        },
    ));
    let (listener, addr) = listener().await;
    let server = example::serve(listener, router, shutdown);
    (addr, Served { app, arrived }, server)
}

/// The example's state, and how many requests reached it.
struct Served {
    app: example::App,
    arrived: Arc<AtomicUsize>,
}

impl Served {
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

fn config() -> example::Config {
    example::Config {
        rate: Rate::per_second(1000).burst(1000),
        workers: 2,
        queue: 4,
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_reaches_the_handlers_context_and_the_response() {
    async fn whoami() -> String {
        let ctx = TaskContext::current().expect("the layer makes it current");
        let id = ctx.value::<RequestId>().expect("the request's id");
        assert_eq!(RequestId::current().as_ref(), Some(id));
        ctx.span_fields()
    }
    let router = Router::new()
        .route("/whoami", routing::get(whoami))
        .layer(ContextLayer::new());
    let (addr, _server) = serve_plain(router).await;

    let given = get_with(addr, "/whoami", &[("x-request-id", "abc-42")]).await;
    assert_eq!(given.status, StatusCode::OK);
    assert_eq!(given.body, "request_id=abc-42");
    assert_eq!(given.headers["x-request-id"], "abc-42");

    let generated = get(addr, "/whoami").await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.body, format!("request_id={id}"));
    assert_ne!(id, "abc-42");

    // The example's own handler says the same.
    let shutdown = Shutdown::new();
    let (addr, _app, _server) = serve_example(config(), &shutdown).await;
    let hello = get_with(addr, "/hello", &[("x-request-id", "hi-1")]).await;
    assert_eq!(hello.body, "hello from request hi-1\n");
}

/// What the handler of `/work` shares with the test.
#[derive(Clone)]
struct Probe {
    contexts: mpsc::UnboundedSender<TaskContext>,
    /// Calls of the pool's function: goes up while the work runs.
    ticks: Arc<AtomicUsize>,
    /// Tasks that saw the request's context cancelled and ended.
    stopped: Arc<AtomicUsize>,
}

/// Starts work through the crate — a pool over an endless source, and a
/// task of its own — all bound to the request's context, and never answers.
async fn work(State(probe): State<Probe>) -> String {
    let ctx = TaskContext::current().expect("the layer makes it current");
    probe.contexts.send(ctx.clone()).unwrap();
    for _ in 0..2 {
        let stopped = probe.stopped.clone();
        ctx.spawn(async move {
            TaskContext::current().unwrap().cancelled().await;
            stopped.fetch_add(1, Ordering::SeqCst);
        });
    }
    let ticks = probe.ticks.clone();
    let calls = futures::stream::iter(0_u64..)
        .par_map_unordered(Workers::new(4).context(&ctx).name("work"), move |_| {
            let ticks = ticks.clone();
            async move {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .count()
        .await;
    format!("stopped after {calls} calls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_cancels_the_handlers_context_and_its_work() {
    let (contexts, mut seen) = mpsc::unbounded_channel();
    let probe = Probe {
        contexts,
        ticks: Arc::default(),
        stopped: Arc::default(),
    };
    let router = Router::new()
        .route("/work", routing::get(work))
        .layer(ContextLayer::new())
        .with_state(probe.clone());
    let (addr, _server) = serve_plain(router).await;
    // The server's accept loop, and nothing else, once the request is over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let baseline = alive_tasks();

    let client = leave_open(addr, "/work").await;
    let ctx = within("the handler", seen.recv()).await.unwrap();
    until("the work started", || {
        probe.ticks.load(Ordering::SeqCst) > 10
    })
    .await;
    assert!(!ctx.is_cancelled());

    drop(client); // the client goes away mid-request
    within("the cancellation", ctx.cancelled()).await;
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
    until("the spawned tasks saw it", || {
        probe.stopped.load(Ordering::SeqCst) == 2
    })
    .await;
    until("every task of the request ended", || {
        alive_tasks() == baseline
    })
    .await;
    let ticks = probe.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        probe.ticks.load(Ordering::SeqCst),
        ticks,
        "the pool's work stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let shutdown = Shutdown::new();
    let config = example::Config {
        // Slow enough that no token comes back while the test runs.
        rate: Rate::every(Duration::from_secs(30)).burst(3),
        ..config()
    };
    let (addr, _app, _server) = serve_example(config, &shutdown).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let reply = get_with(addr, "/hello", &[("x-api-key", "ann")]).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            let seconds: u64 = reply.headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=30).contains(&seconds), "Retry-After: {seconds}");
            assert!(reply.headers.contains_key("x-request-id"));
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let bob = get_with(addr, "/hello", &[("x-api-key", "bob")]).await;
    assert_eq!(bob.status, StatusCode::OK, "each client has its own quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_sheds_with_503_and_the_jobs_of_clients_that_left_stop() {
    let shutdown = Shutdown::new();
    let config = example::Config {
        workers: 1,
        queue: 1,
        ..config()
    };
    let (addr, served, _server) = serve_example(config, &shutdown).await;
    let app = &served.app;
    let endless = "/primes/1000000000000";

    let running = leave_open(addr, endless).await;
    until("the first job runs", || app.pool.stats().running == 1).await;
    let queued = leave_open(addr, endless).await;
    until("the second job waits", || app.pool.stats().waiting == 1).await;

    let shed = get(addr, endless).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    assert_eq!(app.pool.stats().rejected, 1);

    drop((running, queued)); // both clients leave: their jobs stop
    until("both jobs ended", || {
        let stats = app.pool.stats();
        stats.running == 0 && stats.waiting == 0 && stats.completed == 2
    })
    .await;
    let served = get(addr, "/primes/1000").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, "168 primes below 1000\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_requests_in_flight_and_refuses_new_connections() {
    let shutdown = Shutdown::new();
    let (addr, served, server) = serve_example(config(), &shutdown).await;
    let in_flight: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep/400").await }))
        .collect();
    until("the requests arrived", || served.arrived() == 3).await;

    shutdown.trigger();
    until("new connections are refused", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
    })
    .await;
    let report = within("the shutdown", shutdown.wait(Duration::from_secs(5))).await;
    assert!(report.is_clean(), "{report}");
    for reply in in_flight {
        let reply = within("a request in flight", reply).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "slept 400 ms\n");
    }
    within("the server's end", server).await.unwrap();
    assert!(served.app.pool.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_stuck_past_the_grace_period_is_named_in_the_report() {
    let shutdown = Shutdown::new();
    let (addr, served, server) = serve_example(config(), &shutdown).await;
    let stuck = tokio::spawn(async move {
        get_with(addr, "/sleep/60000", &[("x-request-id", "stuck-1")]).await
    });
    let polite = tokio::spawn(async move { get(addr, "/sleep/50").await });
    until("the requests arrived", || served.arrived() == 2).await;

    shutdown.trigger();
    let report = within("the shutdown", shutdown.wait(Duration::from_millis(300))).await;
    assert_eq!(report.aborted(), ["GET /sleep/60000 request_id=stuck-1"]);

    let polite = within("the polite request", polite).await.unwrap();
    assert_eq!(polite.status, StatusCode::OK);
    let stuck = within("the stuck request", stuck).await.unwrap();
    assert_eq!(
        stuck.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "answered at the abort"
    );
    assert_eq!(stuck.headers["x-request-id"], "stuck-1");
    within("the server's end", server).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_504_and_its_job_stops() {
    let shutdown = Shutdown::new();
    let config = example::Config {
        timeout: Duration::from_millis(200),
        workers: 1,
        ..config()
    };
    let (addr, served, _server) = serve_example(config, &shutdown).await;
    let slow = get_with(addr, "/sleep/60000", &[("x-request-id", "late-1")]).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.headers["x-request-id"], "late-1");

    let endless = get(addr, "/primes/1000000000000").await;
    assert_eq!(endless.status, StatusCode::GATEWAY_TIMEOUT);
    until("the job stopped", || {
        let stats = served.app.pool.stats();
        stats.running == 0 && stats.completed == 1
    })
    .await;
}

/// Reads from `stream` into `seen` until it holds `wanted`.
async fn read_until(stream: &mut TcpStream, seen: &mut String, wanted: &str) {
    use tokio::io::AsyncReadExt;
    within(&format!("{wanted:?} on the event stream"), async {
        let mut buf = [0_u8; 4096];
        while !seen.contains(wanted) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the stream ended before {wanted:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_reach_event_listeners_and_the_drain_ends_their_streams() {
    use tokio::io::AsyncReadExt;
    let shutdown = Shutdown::new();
    let (addr, served, server) = serve_example(config(), &shutdown).await;
    let mut listener = leave_open(addr, "/events").await;
    let mut seen = String::new();
    // The headers go out once the handler has subscribed.
    read_until(&mut listener, &mut seen, "text/event-stream").await;
    assert_eq!(served.app.events.subscriber_count(), 1);

    let reply = get_with(addr, "/primes/1000", &[("x-request-id", "job-7")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    read_until(
        &mut listener,
        &mut seen,
        "request job-7: 168 primes below 1000",
    )
    .await;
    assert!(seen.contains("event: job"), "{seen}");

    // The drain closes the topic: the event stream ends, its connection
    // closes, and the shutdown is clean.
    shutdown.trigger();
    within("the event stream's end", async {
        let mut buf = [0_u8; 4096];
        loop {
            let n = listener.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(seen.ends_with("0\r\n\r\n"), "the body ended: {seen:?}");
    let report = within("the shutdown", shutdown.wait(Duration::from_secs(5))).await;
    assert!(report.is_clean(), "{report}");
    within("the server", server).await.unwrap();
    assert_eq!(served.app.events.subscriber_count(), 0);
}
