//! WorkerPool against the pools a user would otherwise write by hand, each
//! returning every job's result through its own reply slot as `submit` does.
//!
//! * `worker_pool/trivial_jobs`: per-job overhead (a job that doubles a number).
//! * `worker_pool/cpu_20us_jobs`: 2 workers on ~20 µs CPU-bound jobs; compare
//!   each pool's time with `sequential` for the speed-up (2 cores: ideal 2×).
//!
//! Run with `cargo bench --bench worker_pool` (needs a `[[bench]]` entry with
//! `harness = false`). Quote ratios within one run, not absolute times.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio_conc::prelude::*;

const TRIVIAL_JOBS: usize = 20_000;
const CPU_JOBS: usize = 1_000;
const QUEUE: usize = 100;

type Work = fn(u64) -> u64;

fn double(i: u64) -> u64 {
    i * 2
}

/// About 20 µs of arithmetic that the optimiser cannot skip.
fn cpu_20us(i: u64) -> u64 {
    let start = Instant::now();
    let mut x = i;
    while start.elapsed() < Duration::from_micros(20) {
        for k in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(k);
        }
    }
    x
}

/// tokio-conc: submit every job from a task, then await every handle.
async fn worker_pool(workers: usize, jobs: usize, work: Work) -> u64 {
    let pool = WorkerPool::new(Workers::new(workers).buffer(QUEUE));
    let submitter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(jobs);
            for i in 0..jobs as u64 {
                handles.push(pool.submit(async move { work(i) }).await.unwrap());
            }
            handles
        })
    };
    let mut sum = 0_u64;
    for handle in submitter.await.unwrap() {
        sum = sum.wrapping_add(handle.await.unwrap());
    }
    sum
}

type Request = (u64, oneshot::Sender<u64>);

/// The usual port of Go's pool: one bounded channel, its receiver shared by
/// the workers behind an async mutex.
async fn mutex_receiver_pool(workers: usize, jobs: usize, work: Work) -> u64 {
    let (tx, rx) = mpsc::channel::<Request>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..workers {
        let rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, reply)) = next else { break };
                let _ = reply.send(work(i));
            }
        });
    }
    let submitter = tokio::spawn(async move {
        let mut replies = Vec::with_capacity(jobs);
        for i in 0..jobs as u64 {
            let (reply, result) = oneshot::channel();
            tx.send((i, reply)).await.unwrap();
            replies.push(result);
        }
        replies
    });
    let mut sum = 0_u64;
    for result in submitter.await.unwrap() {
        sum = sum.wrapping_add(result.await.unwrap());
    }
    sum
}

/// One bounded channel per worker, jobs dealt round-robin.
async fn round_robin_pool(workers: usize, jobs: usize, work: Work) -> u64 {
    let mut lanes = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE.div_ceil(workers));
        tokio::spawn(async move {
            while let Some((i, reply)) = rx.recv().await {
                let _ = reply.send(work(i));
            }
        });
        lanes.push(tx);
    }
    let submitter = tokio::spawn(async move {
        let mut replies = Vec::with_capacity(jobs);
        for i in 0..jobs {
            let (reply, result) = oneshot::channel();
            lanes[i % workers].send((i as u64, reply)).await.unwrap();
            replies.push(result);
        }
        replies
    });
    let mut sum = 0_u64;
    for result in submitter.await.unwrap() {
        sum = sum.wrapping_add(result.await.unwrap());
    }
    sum
}

/// A task per job, at most `workers` of them alive at once.
async fn spawn_per_job(workers: usize, jobs: usize, work: Work) -> u64 {
    let slots = Arc::new(Semaphore::new(workers));
    let submitter = tokio::spawn(async move {
        let mut handles = Vec::with_capacity(jobs);
        for i in 0..jobs as u64 {
            let slot = slots.clone().acquire_owned().await.unwrap();
            handles.push(tokio::spawn(async move {
                let _slot = slot;
                work(i)
            }));
        }
        handles
    });
    let mut sum = 0_u64;
    for handle in submitter.await.unwrap() {
        sum = sum.wrapping_add(handle.await.unwrap());
    }
    sum
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn trivial_jobs(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("worker_pool/trivial_jobs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(TRIVIAL_JOBS as u64));
    for workers in [2, 8] {
        group.bench_with_input(
            BenchmarkId::new("WorkerPool", workers),
            &workers,
            |b, &w| {
                b.to_async(&rt)
                    .iter(|| async move { black_box(worker_pool(w, TRIVIAL_JOBS, double).await) })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hand-written Arc<Mutex<Receiver>>", workers),
            &workers,
            |b, &w| {
                b.to_async(&rt).iter(|| async move {
                    black_box(mutex_receiver_pool(w, TRIVIAL_JOBS, double).await)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hand-written round-robin mpsc", workers),
            &workers,
            |b, &w| {
                b.to_async(&rt).iter(|| async move {
                    black_box(round_robin_pool(w, TRIVIAL_JOBS, double).await)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio::spawn per job", workers),
            &workers,
            |b, &w| {
                b.to_async(&rt)
                    .iter(|| async move { black_box(spawn_per_job(w, TRIVIAL_JOBS, double).await) })
            },
        );
    }
    group.finish();
}

fn cpu_jobs(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("worker_pool/cpu_20us_jobs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(CPU_JOBS as u64));
    group.bench_function("sequential", |b| {
        b.iter(|| (0..CPU_JOBS as u64).fold(0_u64, |sum, i| sum.wrapping_add(cpu_20us(i))))
    });
    group.bench_function("WorkerPool, 2 workers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(worker_pool(2, CPU_JOBS, cpu_20us).await) })
    });
    group.bench_function("hand-written Arc<Mutex<Receiver>>, 2 workers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(mutex_receiver_pool(2, CPU_JOBS, cpu_20us).await) })
    });
    group.bench_function("hand-written round-robin mpsc, 2 workers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(round_robin_pool(2, CPU_JOBS, cpu_20us).await) })
    });
    group.bench_function("tokio::spawn per job, 2 alive", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(spawn_per_job(2, CPU_JOBS, cpu_20us).await) })
    });
    group.finish();
}

criterion_group!(benches, trivial_jobs, cpu_jobs);
criterion_main!(benches);
