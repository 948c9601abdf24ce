//! fan_in against what a user would otherwise write: `futures::stream::select_all`
//! and `tokio_stream::StreamMap`, merging 2, 8 and 64 inputs.
//!
//! * `ready/*`: inputs are `stream::iter` ranges, always ready — the cost of
//!   the merge itself.
//! * `channels/*`: inputs are mpsc receivers (capacity 100) fed by one producer
//!   task each — Go's fan-in of goroutines, on a 2-worker runtime.
//!
//! Run: `cargo bench --bench fan_in`. Compare ratios within one run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{Stream, StreamExt, stream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_conc::prelude::*;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::ReceiverStream;

const READY_ITEMS: u64 = 65_536;
const CHANNEL_ITEMS: u64 = 32_768;
const CAPACITY: usize = 100;
const INPUTS: [usize; 3] = [2, 8, 64];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Sums a merged stream: the consumer does as little as possible.
async fn drain<S: Stream<Item = u64> + Unpin>(merged: S) -> u64 {
    merged.fold(0, |acc, x| async move { acc + x }).await
}

fn ranges(inputs: usize, total: u64) -> Vec<stream::Iter<std::ops::Range<u64>>> {
    let each = total / inputs as u64;
    (0..inputs as u64)
        .map(|i| stream::iter(i * each..(i + 1) * each))
        .collect()
}

fn channels(inputs: usize, total: u64) -> Vec<ReceiverStream<u64>> {
    let each = total / inputs as u64;
    (0..inputs as u64)
        .map(|i| {
            let (tx, rx) = mpsc::channel(CAPACITY);
            tokio::spawn(async move {
                for x in i * each..(i + 1) * each {
                    if tx.send(x).await.is_err() {
                        return;
                    }
                }
            });
            ReceiverStream::new(rx)
        })
        .collect()
}

async fn stream_map<S: Stream<Item = u64> + Unpin>(inputs: Vec<S>) -> u64 {
    let mut map = StreamMap::new();
    for (key, input) in inputs.into_iter().enumerate() {
        map.insert(key, input);
    }
    drain(map.map(|(_, x)| x)).await
}

fn bench_ready(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fan_in/ready");
    group.throughput(Throughput::Elements(READY_ITEMS));
    for inputs in INPUTS {
        group.bench_with_input(BenchmarkId::new("fan_in", inputs), &inputs, |b, &n| {
            b.to_async(&rt)
                .iter(|| async move { black_box(drain(fan_in(ranges(n, READY_ITEMS))).await) });
        });
        group.bench_with_input(BenchmarkId::new("select_all", inputs), &inputs, |b, &n| {
            b.to_async(&rt).iter(|| async move {
                black_box(drain(stream::select_all(ranges(n, READY_ITEMS))).await)
            });
        });
        group.bench_with_input(BenchmarkId::new("StreamMap", inputs), &inputs, |b, &n| {
            b.to_async(&rt)
                .iter(|| async move { black_box(stream_map(ranges(n, READY_ITEMS)).await) });
        });
    }
    group.finish();
}

fn bench_channels(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fan_in/channels");
    group.throughput(Throughput::Elements(CHANNEL_ITEMS));
    for inputs in INPUTS {
        // Each iteration runs inside a spawned task, as a real consumer would.
        group.bench_with_input(BenchmarkId::new("fan_in", inputs), &inputs, |b, &n| {
            b.to_async(&rt).iter(|| async move {
                let merged = fan_in(channels(n, CHANNEL_ITEMS));
                black_box(tokio::spawn(drain(merged)).await.unwrap())
            });
        });
        group.bench_with_input(BenchmarkId::new("select_all", inputs), &inputs, |b, &n| {
            b.to_async(&rt).iter(|| async move {
                let merged = stream::select_all(channels(n, CHANNEL_ITEMS));
                black_box(tokio::spawn(drain(merged)).await.unwrap())
            });
        });
        group.bench_with_input(BenchmarkId::new("StreamMap", inputs), &inputs, |b, &n| {
            b.to_async(&rt).iter(|| async move {
                let inputs = channels(n, CHANNEL_ITEMS);
                black_box(tokio::spawn(stream_map(inputs)).await.unwrap())
            });
        });
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
    targets = bench_ready, bench_channels
}
criterion_main!(benches);
