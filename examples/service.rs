//! An axum service built on tokio-conc — what a Go `net/http` service gets
//! from `r.Context()`, `http.TimeoutHandler`, `x/time/rate` and
//! `srv.Shutdown(ctx)`:
//!
//! * [`ContextLayer`]: every request runs in a `TaskContext` of its own, with
//!   a request id (from `x-request-id`, or generated) in its logs and its
//!   response, a 5 s deadline (504 past it), cancelled when the client goes
//!   away — so the work it started stops too;
//! * a per-client rate limit with a `KeyedRateLimiter` (429 with
//!   `Retry-After`), the client being its `x-api-key` or its address;
//! * CPU-heavy work (counting primes) in a `WorkerPool`, shed with
//!   `try_submit` when the queue is full (503 with `Retry-After`);
//! * a pub/sub `Topic` feeding a server-sent-events endpoint: each finished
//!   job is published (`try_publish`: a request never waits on a slow
//!   listener); each listener is a DropOldest subscription, told how many
//!   events it missed instead of holding up the rest; the stream ends at the
//!   request's deadline (an SSE client reconnects) or when the drain closes
//!   the topic;
//! * a `Shutdown` on Ctrl-C / SIGTERM: axum stops accepting and lets the
//!   requests in flight finish (each is a task of the shutdown, so the
//!   report names any that outlive the grace period), the pool drains, the
//!   topic closes (so event streams end), and the report is printed at exit.
//!
//! Run with `cargo run --example service --features tower` and try
//!
//! ```text
//! curl -N localhost:3000/events &             # finished jobs, as they finish
//! curl -i localhost:3000/hello
//! curl -i localhost:3000/primes/2000000        # on the pool
//! curl -i localhost:3000/sleep/8000            # 504 after 5 s
//! for i in $(seq 30); do curl -s -o /dev/null -w '%{http_code} ' localhost:3000/hello; done
//! ```
//!
//! then press Ctrl-C while a `/sleep/3000` is in flight (`--addr HOST:PORT`
//! to listen elsewhere, `--after SECONDS` to shut down by itself).

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_conc::pool::RejectReason;
use tokio_conc::prelude::*;
use tokio_conc::pubsub::Received;
use tokio_conc::service::{ContextLayer, RequestId};

/// How long the requests in flight get to finish once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

/// What the service is given.
pub struct Config {
    /// Each client's quota.
    pub rate: Rate,
    /// Workers of the CPU pool (one per core is typical).
    pub workers: usize,
    /// Jobs that may wait for a worker before requests are shed.
    pub queue: usize,
    /// Each request's deadline.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate: Rate::per_second(10).burst(20),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The service's shared state.
#[derive(Clone)]
pub struct App {
    /// One quota per client.
    pub limiter: KeyedRateLimiter<String>,
    /// The CPU-heavy work.
    pub pool: WorkerPool,
    /// What the jobs finished, for `/events`.
    pub events: Topic<String>,
}

/// The router and its state: every request in a context of its own (a
/// child of the shutdown's), rate limited per client.
pub fn service(config: &Config, shutdown: &Shutdown) -> (Router, App) {
    let app = App {
        limiter: KeyedRateLimiter::new(config.rate),
        pool: WorkerPool::new(
            Workers::new(config.workers)
                .buffer(config.queue)
                .context(shutdown.context())
                .name("cpu"),
        ),
        // A slow listener loses its oldest events (and is told how many);
        // a new one gets the last few.
        events: Topic::new(64)
            .policy(SlowSubscriber::DropOldest)
            .replay(4)
            .context(shutdown.context()),
    };
    // The pool stops taking work when the drain begins and finishes what it
    // holds; the topic closes, so every event stream ends.
    let pool = app.pool.clone();
    let topic = app.events.clone();
    let draining = shutdown.draining();
    shutdown.spawn("cpu-pool", async move {
        draining.await;
        topic.close();
        pool.close();
        pool.join().await;
    });

    let router = Router::new()
        .route("/hello", get(hello))
        .route("/primes/{below}", get(primes))
        .route("/sleep/{ms}", get(sleep))
        .route("/events", get(events))
        .layer(middleware::from_fn_with_state(app.clone(), rate_limit))
        // Outermost, so that even a rejected request has an id and a context.
        .layer(
            ContextLayer::new()
                .shutdown(shutdown)
                .timeout(config.timeout),
        )
        .with_state(app.clone());
    (router, app)
}

/// Serves `router` on `listener` until `shutdown` starts draining; then
/// stops accepting and ends once the connections in flight have closed.
pub fn serve(listener: TcpListener, router: Router, shutdown: &Shutdown) -> JoinHandle<()> {
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.draining());
    tokio::spawn(async move {
        if let Err(err) = server.into_future().await {
            tracing::error!(%err, "the server failed");
        }
    })
}

async fn hello() -> String {
    // The id of this request, from the context the layer made current; the
    // log line carries it too (`ctx{values=request_id=…}`).
    let id = RequestId::current().expect("inside the ContextLayer");
    tracing::info!("saying hello");
    format!("hello from request {id}\n")
}

/// Counts the primes below `below` on the CPU pool. When the client goes
/// away or the deadline passes, the request's context is cancelled and the
/// job stops at its next chunk.
async fn primes(State(app): State<App>, Path(below): Path<u64>) -> Response {
    let ctx = TaskContext::current().expect("inside the ContextLayer");
    match app.pool.try_submit(count_primes(below, ctx)) {
        Ok(job) => match job.await {
            Ok(Ok(count)) => {
                let id = RequestId::current().expect("inside the ContextLayer");
                // Never waits: a DropOldest topic makes room itself.
                let _ = app
                    .events
                    .try_publish(format!("request {id}: {count} primes below {below}"));
                format!("{count} primes below {below}\n").into_response()
            }
            Ok(Err(stopped)) => stopped_response(&stopped),
            Err(failed) => {
                tracing::error!(%failed, "the job failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        },
        Err(rejected) => match rejected.reason() {
            RejectReason::Full => unavailable("busy, try again"),
            _ => unavailable("shutting down"),
        },
    }
}

/// A CPU-bound job in chunks, checking the request's context between them
/// (and yielding, so one job cannot hog its worker thread).
pub async fn count_primes(below: u64, ctx: TaskContext) -> Result<u64, ContextError> {
    const CHUNK: u64 = 20_000;
    let mut count = 0;
    let mut start = 2;
    while start < below {
        if let Some(stopped) = ctx.err() {
            return Err(stopped);
        }
        let end = below.min(start + CHUNK);
        count += (start..end).filter(|&n| is_prime(n)).count() as u64;
        start = end;
        tokio::task::yield_now().await;
    }
    Ok(count)
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Waits `ms` milliseconds, or until the request's context stops (the
/// client left, the deadline passed, the shutdown aborted).
async fn sleep(Path(ms): Path<u64>) -> Response {
    let ctx = TaskContext::current().expect("inside the ContextLayer");
    match ctx.run(tokio::time::sleep(Duration::from_millis(ms))).await {
        Ok(()) => format!("slept {ms} ms\n").into_response(),
        Err(stopped) => stopped_response(&stopped),
    }
}

/// Server-sent events: every job finished from now on (and the last few
/// before), with a `missed` event where this listener fell behind. Ends at
/// the request's deadline (the client reconnects) or when the topic closes.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ctx = TaskContext::current().expect("inside the ContextLayer");
    let updates = app
        .events
        .subscribe()
        .with_gaps()
        .take_until(ctx.cancelled_owned())
        .map(|received| {
            Ok(match received {
                Received::Message(text) => Event::default().event("job").data(text),
                Received::Missed(n) => Event::default().event("missed").data(n.to_string()),
            })
        });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

/// 429 with `Retry-After` once a client is over its quota.
async fn rate_limit(State(app): State<App>, request: Request, next: Next) -> Response {
    let client = client_key(&request);
    match app.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(over) => {
            let wait = over.ready_at().map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(tokio::time::Instant::now())
            });
            tracing::info!(%client, ?wait, "over the rate");
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "slow down\n").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after(wait));
            response
        }
    }
}

/// The client a quota belongs to: its API key, or else its address.
fn client_key(request: &Request) -> String {
    if let Some(key) = request
        .headers()
        .get("x-api-key")
        .and_then(|k| k.to_str().ok())
    {
        return format!("key:{key}");
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "unknown".to_string(),
    }
}

/// Whole seconds, rounded up, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// What a handler answers when its request's context stopped it: what the
/// layer would answer (a handler that notices first answers itself).
fn stopped_response(stopped: &ContextError) -> Response {
    if stopped.is_deadline_exceeded() {
        (StatusCode::GATEWAY_TIMEOUT, format!("{stopped}\n")).into_response()
    } else {
        unavailable(&stopped.to_string())
    }
}

fn unavailable(why: &str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

struct Options {
    addr: SocketAddr,
    after: Option<Duration>,
}

fn options() -> Options {
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        after: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                options.addr = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--addr takes HOST:PORT");
            }
            "--after" => {
                let seconds: f64 = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--after takes a number of seconds");
                options.after = Some(Duration::from_secs_f64(seconds));
            }
            other => panic!("unknown argument {other:?}; try --addr HOST:PORT, --after SECONDS"),
        }
    }
    options
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = options();
    tracing_subscriber::fmt().with_target(false).init();
    // Go: ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
    let shutdown = Shutdown::new().on_signals();
    let (router, app) = service(&Config::default(), &shutdown);

    let listener = TcpListener::bind(options.addr).await?;
    println!(
        "listening on http://{} (Ctrl-C to stop; twice to skip the grace period)",
        listener.local_addr()?
    );
    let server = serve(listener, router, &shutdown);
    if let Some(after) = options.after {
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            trigger.trigger();
        });
    }

    // Go: <-ctx.Done(); srv.Shutdown(timeoutCtx)
    shutdown.draining().await;
    println!("draining: no new connections; the requests in flight finish");
    let report = shutdown.wait(GRACE).await;
    // Every request has ended (or was answered 503 at the abort): the server
    // closes its last connections and returns.
    if tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .is_err()
    {
        println!("a connection was still open; leaving it");
    }
    let stats = app.pool.stats();
    println!(
        "pool: {} jobs completed, {} shed; {report}",
        stats.completed, stats.rejected
    );
    for task in report.aborted() {
        println!("had to abort: {task}");
    }
    Ok(())
}
