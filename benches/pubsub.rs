//! `Topic` against the broadcast channels a user would otherwise pick.
//!
//! Every case moves the same messages through a 2-worker multi-thread runtime:
//! one publisher task publishes `0..MESSAGES`, then drops its sender (which
//! closes the channel); each subscriber (or receiver) is consumed by its own
//! spawned task that sums what it gets. Throughput counts deliveries: every
//! message to every subscriber.
//!
//! * Nothing lost (the sums are checked): `tokio_conc` `Topic` with the
//!   Backpressure policy against `async_broadcast` (bounded, the sender waits
//!   for the slowest receiver: the same contract), and against
//!   `tokio::sync::broadcast` given a buffer of every message (the only way it
//!   loses none).
//! * Lossy, capacity 100: a DropOldest `Topic` against `tokio::sync::broadcast`,
//!   whose slow receivers lose the oldest messages too. Each subscriber's
//!   messages plus its counted losses must add up to every message. The
//!   topic is fed both ways: `publish(..).await` (which yields to the
//!   scheduler now and then, so its subscribers receive more of the
//!   messages) and `try_publish` (never yields, like tokio's `send`).
//!
//! Compare the ratios within one run: `cargo bench --bench pubsub`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{Stream, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;
use tokio_conc::prelude::*;

const MESSAGES: u64 = 20_000;
/// The buffer of every bounded case.
const CAPACITY: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn expected_sum(messages: u64) -> u64 {
    messages * (messages - 1) / 2
}

/// Consumes each stream on its own task; returns each one's sum and count.
async fn sum_on_tasks<S>(streams: impl IntoIterator<Item = S>) -> Vec<(u64, u64)>
where
    S: Stream<Item = u64> + Send + 'static,
{
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| {
            tokio::spawn(s.fold(
                (0_u64, 0_u64),
                |(sum, n), x| async move { (sum + x, n + 1) },
            ))
        })
        .collect();
    let mut totals = Vec::new();
    for task in tasks {
        totals.push(task.await.unwrap());
    }
    totals
}

fn assert_lossless(totals: &[(u64, u64)]) {
    for &(sum, n) in totals {
        assert_eq!((sum, n), (expected_sum(MESSAGES), MESSAGES));
    }
}

/// Publishes every message on a task of its own, then drops the topic.
async fn topic_run(topic: Topic<u64>, subs: Vec<Subscription<u64>>) -> Vec<(u64, u64)> {
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            topic.publish(i).await.unwrap();
        }
    });
    let totals = sum_on_tasks(subs).await;
    publisher.await.unwrap();
    totals
}

async fn topic_backpressure(n: usize) {
    let topic = Topic::new(CAPACITY);
    let subs = (0..n).map(|_| topic.subscribe()).collect();
    assert_lossless(&topic_run(topic, subs).await);
}

/// How the lossy topic's publisher publishes.
#[derive(Clone, Copy)]
enum Publish {
    /// `publish(..).await`: never waits on a DropOldest topic, but takes its
    /// share of Tokio's cooperative budget (one unit per 16 publishes), so
    /// the subscribers get to run now and then.
    Await,
    /// `try_publish(..)`: never waits and never yields — what
    /// `tokio::sync::broadcast::Sender::send` does.
    Try,
}

async fn topic_drop_oldest(n: usize, how: Publish) {
    let topic = Topic::new(CAPACITY).policy(SlowSubscriber::DropOldest);
    let subs: Vec<_> = (0..n).map(|_| topic.subscribe().with_gaps()).collect();
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            match how {
                Publish::Await => topic.publish(i).await.map(drop).unwrap(),
                Publish::Try => topic.try_publish(i).map(drop).unwrap(),
            }
        }
    });
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|sub| {
            tokio::spawn(sub.fold(0_u64, |n, item| async move {
                n + match item {
                    Received::Message(_) => 1,
                    Received::Missed(lost) => lost,
                }
            }))
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), MESSAGES);
    }
    publisher.await.unwrap();
}

async fn async_broadcast_run(n: usize) {
    let (tx, rx) = async_broadcast::broadcast(CAPACITY);
    let receivers: Vec<_> = (0..n).map(|_| rx.clone()).collect();
    drop(rx);
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            tx.broadcast(i).await.unwrap();
        }
    });
    assert_lossless(&sum_on_tasks(receivers).await);
    publisher.await.unwrap();
}

/// A tokio broadcast receiver as a stream of what it got and what it lost.
fn tokio_receiver(
    rx: tokio::sync::broadcast::Receiver<u64>,
) -> impl Stream<Item = Result<u64, u64>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(x) => Some((Ok(x), rx)),
            Err(RecvError::Lagged(lost)) => Some((Err(lost), rx)),
            Err(RecvError::Closed) => None,
        }
    })
}

/// `tokio::sync::broadcast` with a buffer of `capacity`; returns each
/// receiver's messages plus losses.
async fn tokio_broadcast_run(n: usize, capacity: usize) -> Vec<u64> {
    let (tx, _) = tokio::sync::broadcast::channel(capacity);
    let receivers: Vec<_> = (0..n).map(|_| tokio_receiver(tx.subscribe())).collect();
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            tx.send(i).unwrap();
        }
    });
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|rx| {
            tokio::spawn(rx.fold(0_u64, |n, got| async move {
                n + match got {
                    Ok(_) => 1,
                    Err(lost) => lost,
                }
            }))
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    publisher.await.unwrap();
    seen
}

fn pubsub(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pubsub");
    for subscribers in [1, 4, 16] {
        group.throughput(Throughput::Elements(MESSAGES * subscribers as u64));
        let id = |name| BenchmarkId::new(name, subscribers);
        group.bench_with_input(id("topic_backpressure"), &subscribers, |b, &n| {
            b.to_async(&rt).iter(|| topic_backpressure(n))
        });
        group.bench_with_input(id("async_broadcast"), &subscribers, |b, &n| {
            b.to_async(&rt).iter(|| async_broadcast_run(n))
        });
        group.bench_with_input(
            id("tokio_sync_broadcast_buffering_every_message"),
            &subscribers,
            |b, &n| {
                b.to_async(&rt).iter(|| async move {
                    let seen = tokio_broadcast_run(n, MESSAGES as usize).await;
                    assert!(seen.iter().all(|&got| got == MESSAGES));
                })
            },
        );
        group.bench_with_input(id("topic_drop_oldest"), &subscribers, |b, &n| {
            b.to_async(&rt)
                .iter(|| topic_drop_oldest(n, Publish::Await))
        });
        group.bench_with_input(
            id("topic_drop_oldest_try_publish"),
            &subscribers,
            |b, &n| b.to_async(&rt).iter(|| topic_drop_oldest(n, Publish::Try)),
        );
        group.bench_with_input(id("tokio_sync_broadcast_lossy"), &subscribers, |b, &n| {
            b.to_async(&rt).iter(|| async move {
                let seen = tokio_broadcast_run(n, CAPACITY).await;
                assert!(seen.iter().all(|&got| got == MESSAGES));
            })
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
    targets = pubsub
}
criterion_main!(benches);
