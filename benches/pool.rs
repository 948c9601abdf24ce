//! Worker pools: tokio-conc's pool operators against what a user would
//! otherwise write, on a multi-thread runtime with 2 worker threads.
//!
//! * `pool/trivial/*` — `x * 2` on 200k items, 2 and 8 workers: per-item
//!   overhead (the throughput is the items/s criterion prints).
//! * `pool/cpu_bound/*` — ~20 µs of hashing per item, 2 workers: compare each
//!   case's time with `sequential_map` for the speed-up.
//! * `pool/trivial/par_map` vs `par_map_unordered`, and `pool/order/*` on
//!   calls of uneven length: the cost of keeping input order.
//!
//! Every pipeline runs inside a spawned task, as in a service, and sums its
//! output so nothing is optimised away.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{StreamExt, stream};
use tokio::runtime::Runtime;
use tokio::sync::{Mutex, mpsc};
use tokio_conc::prelude::*;

const TRIVIAL_ITEMS: u64 = 200_000;
const CPU_ITEMS: u64 = 2_000;
const ORDER_ITEMS: u64 = 50_000;
const CHANNEL_CAPACITY: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A cheap hash mixed `rounds` times: CPU work with no memory traffic.
fn burn(seed: u64, rounds: u32) -> u64 {
    let mut h = seed | 1;
    for _ in 0..rounds {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    black_box(h)
}

/// Rounds of [`burn`] that take about 20 µs, set once before the CPU-bound group.
static ROUNDS: AtomicU32 = AtomicU32::new(0);

/// ~20 µs of hashing, as a plain `fn` for the hand-written pools.
fn burn_20us(x: u64) -> u64 {
    burn(x, ROUNDS.load(Ordering::Relaxed))
}

/// Rounds of [`burn`] that take about 20 µs on this machine.
fn rounds_for_20us() -> u32 {
    let probe = 100_000;
    let started = Instant::now();
    burn(7, probe);
    let per_round = started.elapsed().as_secs_f64() / f64::from(probe);
    (20e-6 / per_round) as u32
}

/// Go's worker pool written by hand: a bounded jobs channel whose receiver
/// the workers share behind an async mutex, and a results channel.
async fn mutex_pool(items: u64, workers: usize, f: fn(u64) -> u64) -> u64 {
    let (jobs_tx, jobs_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (results_tx, mut results_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    for _ in 0..workers {
        let (jobs_rx, results_tx) = (jobs_rx.clone(), results_tx.clone());
        tokio::spawn(async move {
            loop {
                let job = jobs_rx.lock().await.recv().await;
                let Some(x) = job else { break };
                results_tx.send(f(x)).await.expect("consumer alive");
            }
        });
    }
    drop(results_tx);
    tokio::spawn(async move {
        for x in 0..items {
            jobs_tx.send(x).await.expect("workers alive");
        }
    });
    let mut sum = 0;
    while let Some(y) = results_rx.recv().await {
        sum += y;
    }
    sum
}

/// The other hand-written pool: the producer deals jobs round-robin to one
/// bounded channel per worker.
async fn round_robin_pool(items: u64, workers: usize, f: fn(u64) -> u64) -> u64 {
    let (results_tx, mut results_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let mut lanes = Vec::new();
    for _ in 0..workers {
        let (tx, mut rx) = mpsc::channel::<u64>(CHANNEL_CAPACITY);
        let results_tx = results_tx.clone();
        tokio::spawn(async move {
            while let Some(x) = rx.recv().await {
                results_tx.send(f(x)).await.expect("consumer alive");
            }
        });
        lanes.push(tx);
    }
    drop(results_tx);
    tokio::spawn(async move {
        for x in 0..items {
            lanes[(x % lanes.len() as u64) as usize]
                .send(x)
                .await
                .expect("worker alive");
        }
    });
    let mut sum = 0;
    while let Some(y) = results_rx.recv().await {
        sum += y;
    }
    sum
}

fn double(x: u64) -> u64 {
    x * 2
}

fn sum(s: impl futures::Stream<Item = u64>) -> impl Future<Output = u64> {
    s.fold(0, |acc, x| async move { acc + x })
}

fn trivial(c: &mut Criterion) {
    let rt = runtime();
    let expected: u64 = (0..TRIVIAL_ITEMS).map(double).sum();
    let mut group = c.benchmark_group("pool/trivial");
    group.throughput(Throughput::Elements(TRIVIAL_ITEMS));
    for workers in [2_usize, 8] {
        let run = |b: &mut criterion::Bencher, work: fn(usize) -> tokio::task::JoinHandle<u64>| {
            b.to_async(&rt)
                .iter(|| async move { assert_eq!(work(workers).await.unwrap(), expected) });
        };
        group.bench_function(BenchmarkId::new("par_map_unordered", workers), |b| {
            run(b, |w| {
                tokio::spawn(sum(
                    stream::iter(0..TRIVIAL_ITEMS).par_map_unordered(w, |x| async move { x * 2 })
                ))
            })
        });
        group.bench_function(BenchmarkId::new("par_map", workers), |b| {
            run(b, |w| {
                tokio::spawn(sum(
                    stream::iter(0..TRIVIAL_ITEMS).par_map(w, |x| async move { x * 2 })
                ))
            })
        });
        group.bench_function(BenchmarkId::new("buffer_unordered_serial", workers), |b| {
            run(b, |w| {
                tokio::spawn(sum(stream::iter(0..TRIVIAL_ITEMS)
                    .map(|x| async move { x * 2 })
                    .buffer_unordered(w)))
            })
        });
        group.bench_function(
            BenchmarkId::new("par_stream_par_then_unordered", workers),
            |b| {
                run(b, |w| {
                    let doubled = par_stream::ParStreamExt::par_then_unordered(
                        stream::iter(0..TRIVIAL_ITEMS),
                        w,
                        |x| async move { x * 2 },
                    );
                    tokio::spawn(sum(doubled))
                })
            },
        );
        group.bench_function(BenchmarkId::new("hand_mutex_receiver_pool", workers), |b| {
            run(b, |w| tokio::spawn(mutex_pool(TRIVIAL_ITEMS, w, double)))
        });
        group.bench_function(BenchmarkId::new("hand_round_robin_pool", workers), |b| {
            run(b, |w| {
                tokio::spawn(round_robin_pool(TRIVIAL_ITEMS, w, double))
            })
        });
    }
    group.finish();
}

fn cpu_bound(c: &mut Criterion) {
    let rt = runtime();
    let rounds = rounds_for_20us();
    ROUNDS.store(rounds, Ordering::Relaxed);
    let mut group = c.benchmark_group("pool/cpu_bound");
    group.throughput(Throughput::Elements(CPU_ITEMS));
    let items = || stream::iter(0..CPU_ITEMS);
    group.bench_function("sequential_map", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(items().map(move |x| burn(x, rounds))))
                .await
                .unwrap()
        })
    });
    group.bench_function("par_map_unordered/2", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(
                items().par_map_unordered(2, move |x| async move { burn(x, rounds) })
            ))
            .await
            .unwrap()
        })
    });
    group.bench_function("par_map/2", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(
                items().par_map(2, move |x| async move { burn(x, rounds) })
            ))
            .await
            .unwrap()
        })
    });
    group.bench_function("buffer_unordered_serial/2", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(items()
                .map(move |x| async move { burn(x, rounds) })
                .buffer_unordered(2)))
            .await
            .unwrap()
        })
    });
    group.bench_function("hand_mutex_receiver_pool/2", |b| {
        b.to_async(&rt).iter(|| async {
            tokio::spawn(mutex_pool(CPU_ITEMS, 2, burn_20us))
                .await
                .unwrap()
        })
    });
    group.bench_function("hand_round_robin_pool/2", |b| {
        b.to_async(&rt).iter(|| async {
            tokio::spawn(round_robin_pool(CPU_ITEMS, 2, burn_20us))
                .await
                .unwrap()
        })
    });
    group.finish();
}

/// Ordered against unordered on calls of uneven length (0-3 yields), where
/// keeping order means waiting for a slow head.
fn order(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pool/order");
    group.throughput(Throughput::Elements(ORDER_ITEMS));
    let uneven = |x: u64| async move {
        for _ in 0..(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62) {
            tokio::task::yield_now().await;
        }
        x
    };
    group.bench_function("par_map_unordered/4", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(
                stream::iter(0..ORDER_ITEMS).par_map_unordered(4, uneven)
            ))
            .await
            .unwrap()
        })
    });
    group.bench_function("par_map/4", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(stream::iter(0..ORDER_ITEMS).par_map(4, uneven)))
                .await
                .unwrap()
        })
    });
    group.bench_function("buffer_unordered_serial/4", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(stream::iter(0..ORDER_ITEMS)
                .map(uneven)
                .buffer_unordered(4)))
            .await
            .unwrap()
        })
    });
    group.bench_function("buffered_serial/4", |b| {
        b.to_async(&rt).iter(|| async move {
            tokio::spawn(sum(stream::iter(0..ORDER_ITEMS).map(uneven).buffered(4)))
                .await
                .unwrap()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = trivial, cpu_bound, order
}
criterion_main!(benches);
