//! What `ContextLayer` costs an HTTP service: requests/s and p50/p99 latency
//! of an axum service on loopback, without the layer and with it (plain, with
//! a timeout, tracking requests for a shutdown).
//!
//! The load generator is bounded: 50 keep-alive connections share 10,000
//! GET requests of a trivial handler (the worst case for the layer: nothing
//! else to hide its cost), on the same runtime as the server. Each round runs
//! every variant once, in turn; the table gives the median over the rounds.
//!
//! `cargo bench --bench service --features tower` (`ROUNDS=n` for more
//! rounds than 5; `IN_PROCESS_ONLY=1` or `LOOPBACK_ONLY=1` for one table,
//! `VARIANT=i` for the i-th row of each table alone, e.g. under `perf stat`). No tracing subscriber is installed, as in a service whose
//! `info` spans are filtered out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_conc::prelude::*;
use tokio_conc::service::ContextLayer;

const CONNECTIONS: usize = 50;
const REQUESTS: usize = 10_000;
const WARM_UP: usize = 2_000;

async fn hello() -> &'static str {
    "hello"
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Plain,
    Layer,
    LayerTimeout,
    LayerShutdown,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Plain,
        Variant::Layer,
        Variant::LayerTimeout,
        Variant::LayerShutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Plain => "no layer",
            Variant::Layer => "ContextLayer::new()",
            Variant::LayerTimeout => "… .timeout(30 s)",
            Variant::LayerShutdown => "… .shutdown(&s).timeout(30 s)",
        }
    }

    fn router(self, shutdown: &Shutdown) -> Router {
        let router = Router::new().route("/", get(hello));
        let timeout = Duration::from_secs(30);
        match self {
            Variant::Plain => router,
            Variant::Layer => router.layer(ContextLayer::new()),
            Variant::LayerTimeout => router.layer(ContextLayer::new().timeout(timeout)),
            Variant::LayerShutdown => {
                router.layer(ContextLayer::new().shutdown(shutdown).timeout(timeout))
            }
        }
    }
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the whole process (server and clients) per request, in
    /// µs: unlike the others, barely moved by what else the machine runs.
    cpu_us: f64,
}

/// Nanoseconds every thread of this process has run, from Linux's
/// `/proc/self/task/*/schedstat`; 0 elsewhere.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `requests` GETs over `CONNECTIONS` keep-alive connections; every latency.
async fn load(addr: SocketAddr, requests: usize) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let share = requests / CONNECTIONS + usize::from(c < requests % CONNECTIONS);
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut latencies = Vec::with_capacity(share);
                for _ in 0..share {
                    let request = Request::get("/")
                        .header(header::HOST, "localhost")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let sent = Instant::now();
                    sender.ready().await.unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    (start.elapsed(), latencies)
}

async fn run(variant: Variant, requests: usize) -> Run {
    let shutdown = Shutdown::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = variant.router(&shutdown);
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let cpu_before = cpu_ns();
    let (elapsed, mut latencies) =
        tokio::time::timeout(Duration::from_secs(120), load(addr, requests))
            .await
            .expect("the load hung");
    let cpu = cpu_ns().saturating_sub(cpu_before);
    server.abort();
    let _ = server.await;
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Run {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        cpu_us: cpu as f64 / 1e3 / requests as f64,
    }
}

/// The layer alone, in-process: ns per request through `service_fn` behind
/// each variant (the body is read to its end, as a server would), the best
/// of five runs of `n` requests.
async fn in_process(variant: Variant, shutdown: Shutdown, n: u32) -> f64 {
    use tower::Layer;
    async fn ready(
        _req: Request<()>,
    ) -> Result<axum::http::Response<String>, std::convert::Infallible> {
        Ok(axum::http::Response::new(String::new()))
    }
    let timeout = Duration::from_secs(30);
    let layer = match variant {
        Variant::Plain => None,
        Variant::Layer => Some(ContextLayer::new()),
        Variant::LayerTimeout => Some(ContextLayer::new().timeout(timeout)),
        Variant::LayerShutdown => Some(ContextLayer::new().shutdown(&shutdown).timeout(timeout)),
    };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        match &layer {
            None => drive(tower::service_fn(ready), n).await,
            Some(layer) => drive(layer.layer(tower::service_fn(ready)), n).await,
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / f64::from(n));
    }
    best
}

/// `n` requests through `service`, one at a time, each body read to its end.
async fn drive<S, B>(mut service: S, n: u32)
where
    S: tower::Service<Request<()>, Response = axum::http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: axum::body::HttpBody,
    B::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    for _ in 0..n {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        let mut body = std::pin::pin!(response.into_body());
        while body.frame().await.is_some() {}
    }
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        let only: Option<usize> = std::env::var("VARIANT").ok().and_then(|v| v.parse().ok());
        let chosen = |i: usize| only.is_none_or(|only| only == i);
        if std::env::var_os("LOOPBACK_ONLY").is_none() {
            println!("In-process, `service_fn` behind the layer, best of 5 × 100,000 requests:");
            println!("| service | ns per request |");
            println!("|---|---:|");
        }
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            if !chosen(i) || std::env::var_os("LOOPBACK_ONLY").is_some() {
                continue;
            }
            // On a worker thread, as a server's handlers run.
            let ns = tokio::spawn(in_process(variant, shutdown.clone(), 100_000))
                .await
                .unwrap();
            println!("| {} | {ns:.0} |", variant.label());
        }
        drop(shutdown);
        if std::env::var_os("IN_PROCESS_ONLY").is_some() {
            return;
        }
        println!();
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            if chosen(i) {
                run(variant, WARM_UP).await;
            }
        }
        let mut runs: Vec<Vec<Run>> = Variant::ALL.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            // Alternate the order, so no variant always runs first.
            let mut order: Vec<usize> = (0..Variant::ALL.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order.into_iter().filter(|&i| chosen(i)) {
                runs[i].push(run(Variant::ALL[i], REQUESTS).await);
            }
        }

        println!(
            "{CONNECTIONS} connections, {REQUESTS} requests, median of {rounds} rounds, {} runtime threads",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "| service | requests/s | p50 | p99 | CPU per request | throughput vs none | p99 vs none | CPU vs none |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let medians: Vec<(f64, Duration, Duration, f64)> = runs
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                (
                    median(r.iter().map(|r| r.per_second).collect()),
                    median(r.iter().map(|r| r.p50).collect()),
                    median(r.iter().map(|r| r.p99).collect()),
                    median(r.iter().map(|r| r.cpu_us).collect()),
                )
            })
            .collect();
        let (base_rps, _, base_p99, base_cpu) = medians[0];
        let variants = Variant::ALL.into_iter().enumerate().filter(|&(i, _)| chosen(i));
        for ((_, variant), (rps, p50, p99, cpu)) in variants.zip(&medians) {
            println!(
                "| {} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {:.3}× | {:.3}× | {:.3}× |",
                variant.label(),
                rps,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                cpu,
                rps / base_rps,
                p99.as_secs_f64() / base_p99.as_secs_f64(),
                cpu / base_cpu,
            );
        }
    });
}
