//! Fan-out, broadcast and partition against what a user would otherwise write.
//!
//! Every case moves the same items through a 2-worker multi-thread runtime, each
//! branch (or receiver) consumed by its own spawned task that sums what it gets;
//! the sums are checked, so no case can win by losing items.
//!
//! * `fan_out/<branches>`: `tokio_conc` `fan_out` on the iterator itself and on
//!   an mpsc fed by a producer task; the Go-style version (one tokio mpsc read
//!   by N tasks through `Arc<tokio::sync::Mutex<Receiver>>`); an MPMC channel
//!   (flume, through `par_stream`'s `spawned`); and `par_stream`'s `shared`.
//! * `fan_out_cpu_bound`: ~20 µs of work per item, 2 branches on 2 workers,
//!   against the same work in one task: do the branches really run in parallel?
//! * `broadcast/<subscribers>`: `tokio_conc` `broadcast` against
//!   `async_broadcast` (bounded, waits for slow receivers: the same contract),
//!   `par_stream`'s `broadcast`, and `tokio::sync::broadcast` — which has no
//!   backpressure and drops items for slow receivers, so it gets a buffer of
//!   every item (the only way it loses nothing).
//! * `partition/<lanes>`: `tokio_conc` `partition` (64 keys) against Go's
//!   dispatcher: one task routing each item into a per-lane mpsc.
//!
//! Compare the ratios within one run: `cargo bench --bench fan_out`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{Stream, StreamExt};
use par_stream::ParStreamExt;
use tokio::runtime::Runtime;
use tokio::sync::{Mutex, mpsc};
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

const FAN_OUT_ITEMS: u64 = 50_000;
const BROADCAST_ITEMS: u64 = 20_000;
/// The channel capacity of the hand-written versions, and the broadcast buffer.
const CAPACITY: usize = 100;
const CPU_ITEMS: u64 = 2_000;
/// Distinct keys in the partition benchmark.
const KEYS: u64 = 64;
const CPU_WORK_ROUNDS: u32 = 20_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn expected_sum(items: u64) -> u64 {
    items * (items - 1) / 2
}

/// Consumes each stream on its own task; returns the total of all items.
async fn sum_on_tasks<S>(streams: impl IntoIterator<Item = S>) -> u64
where
    S: Stream<Item = u64> + Send + 'static,
{
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(s.fold(0_u64, |sum, x| async move { sum + x })))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

/// A producer task sending `0..items` into a tokio mpsc.
fn producer(items: u64) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel(CAPACITY);
    tokio::spawn(async move {
        for i in 0..items {
            tx.send(i).await.unwrap();
        }
    });
    rx
}

async fn go_style_mutex_receiver(branches: usize, items: u64) -> u64 {
    let rx = Arc::new(Mutex::new(producer(items)));
    let workers: Vec<_> = (0..branches)
        .map(|_| {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut sum = 0;
                while let Some(x) = rx.lock().await.recv().await {
                    sum += x;
                }
                sum
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    total
}

fn fan_out(c: &mut Criterion) {
    let rt = runtime();
    let items = FAN_OUT_ITEMS;
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(items));
    for branches in [2, 8] {
        group.bench_with_input(
            BenchmarkId::new("tokio_conc_fan_out_of_iter", branches),
            &branches,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let sum = sum_on_tasks(futures::stream::iter(0..items).fan_out(n)).await;
                    assert_eq!(sum, expected_sum(items));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio_conc_fan_out_of_mpsc", branches),
            &branches,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let source = ReceiverStream::new(producer(items));
                    let sum = sum_on_tasks(source.fan_out(n)).await;
                    assert_eq!(sum, expected_sum(items));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("go_style_arc_mutex_mpsc_receiver", branches),
            &branches,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    assert_eq!(go_style_mutex_receiver(n, items).await, expected_sum(items));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("mpmc_flume_via_par_stream_spawned", branches),
            &branches,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let rx = ParStreamExt::spawned(futures::stream::iter(0..items), CAPACITY);
                    let sum = sum_on_tasks((0..n).map(|_| rx.clone())).await;
                    assert_eq!(sum, expected_sum(items));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("par_stream_shared", branches),
            &branches,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let shared = par_stream::StreamExt::shared(futures::stream::iter(0..items));
                    let sum = sum_on_tasks((0..n).map(|_| shared.clone())).await;
                    assert_eq!(sum, expected_sum(items));
                })
            },
        );
    }
    group.finish();
}

/// About 20 µs of CPU work.
fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..CPU_WORK_ROUNDS {
        h = std::hint::black_box(h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    h % 2 + x
}

/// Whether the branches really run in parallel: CPU-bound items on 2 workers,
/// against the same work done in one task.
fn fan_out_cpu_bound(c: &mut Criterion) {
    let rt = runtime();
    let items = CPU_ITEMS;
    let expected: u64 = (0..items).map(work).sum();
    let mut group = c.benchmark_group("fan_out_cpu_bound");
    group.throughput(Throughput::Elements(items));
    group.bench_function("sequential_one_task", |b| {
        b.to_async(&rt).iter(|| async move {
            let sum = tokio::spawn(
                futures::stream::iter(0..items)
                    .map(work)
                    .fold(0, |s, x| async move { s + x }),
            );
            assert_eq!(sum.await.unwrap(), expected);
        })
    });
    group.bench_function("tokio_conc_fan_out/2", |b| {
        b.to_async(&rt).iter(|| async move {
            let branches = futures::stream::iter(0..items).fan_out(2);
            let sum = sum_on_tasks(branches.into_iter().map(|b| b.map(work))).await;
            assert_eq!(sum, expected);
        })
    });
    group.bench_function("go_style_arc_mutex_mpsc_receiver/2", |b| {
        b.to_async(&rt).iter(|| async move {
            let rx = Arc::new(Mutex::new(producer(items)));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    tokio::spawn(async move {
                        let mut sum = 0;
                        while let Some(x) = rx.lock().await.recv().await {
                            sum += work(x);
                        }
                        sum
                    })
                })
                .collect();
            let mut sum = 0;
            for worker in workers {
                sum += worker.await.unwrap();
            }
            assert_eq!(sum, expected);
        })
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    let rt = runtime();
    let items = BROADCAST_ITEMS;
    let mut group = c.benchmark_group("broadcast");
    for subscribers in [1, 4, 16] {
        // Throughput counts deliveries: every item to every subscriber.
        group.throughput(Throughput::Elements(items * subscribers as u64));
        let expected = expected_sum(items) * subscribers as u64;
        group.bench_with_input(
            BenchmarkId::new("tokio_conc_broadcast", subscribers),
            &subscribers,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let branches = ConcurrentStreamExt::broadcast(
                        futures::stream::iter(0..items),
                        n,
                        CAPACITY,
                    );
                    assert_eq!(sum_on_tasks(branches).await, expected);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("async_broadcast", subscribers),
            &subscribers,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let (tx, rx) = async_broadcast::broadcast(CAPACITY);
                    let receivers: Vec<_> = (0..n).map(|_| rx.clone()).collect();
                    drop(rx);
                    let producer = tokio::spawn(async move {
                        for i in 0..items {
                            tx.broadcast(i).await.unwrap();
                        }
                    });
                    assert_eq!(sum_on_tasks(receivers).await, expected);
                    producer.await.unwrap();
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("par_stream_broadcast", subscribers),
            &subscribers,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let mut builder =
                        ParStreamExt::broadcast(futures::stream::iter(0..items), CAPACITY, false);
                    let receivers: Vec<_> = (0..n).map(|_| builder.register()).collect();
                    builder.build();
                    assert_eq!(sum_on_tasks(receivers).await, expected);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio_sync_broadcast_buffering_every_item", subscribers),
            &subscribers,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let (tx, _) = tokio::sync::broadcast::channel(items as usize);
                    let receivers: Vec<_> = (0..n)
                        .map(|_| {
                            futures::stream::unfold(tx.subscribe(), |mut rx| async move {
                                // Closed ends the stream; Lagged would be a lost item.
                                rx.recv().await.ok().map(|x| (x, rx))
                            })
                        })
                        .collect();
                    let producer = tokio::spawn(async move {
                        for i in 0..items {
                            tx.send(i).unwrap();
                        }
                    });
                    assert_eq!(sum_on_tasks(receivers).await, expected);
                    producer.await.unwrap();
                })
            },
        );
    }
    group.finish();
}

/// Go's keyed dispatcher: one task routing each item to `lanes[hash % n]`.
async fn go_style_dispatcher(lanes: usize, items: u64) -> u64 {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..lanes).map(|_| mpsc::channel(CAPACITY)).unzip();
    let dispatcher = tokio::spawn(async move {
        for i in 0..items {
            senders[lane_of(i % KEYS, lanes)].send(i).await.unwrap();
        }
    });
    let sum = sum_on_tasks(receivers.into_iter().map(ReceiverStream::new)).await;
    dispatcher.await.unwrap();
    sum
}

fn lane_of(key: u64, lanes: usize) -> usize {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

fn partition(c: &mut Criterion) {
    let rt = runtime();
    let items = FAN_OUT_ITEMS;
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Elements(items));
    for lanes in [2, 8] {
        group.bench_with_input(
            BenchmarkId::new("tokio_conc_partition", lanes),
            &lanes,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let lanes =
                        futures::stream::iter(0..items)
                            .partition_with(n, CAPACITY, |x: &u64| *x % KEYS);
                    assert_eq!(sum_on_tasks(lanes).await, expected_sum(items));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("go_style_dispatcher_task_and_mpsc_per_lane", lanes),
            &lanes,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    assert_eq!(go_style_dispatcher(n, items).await, expected_sum(items));
                })
            },
        );
    }
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
    targets = fan_out, fan_out_cpu_bound, broadcast, partition
}
criterion_main!(benches);
