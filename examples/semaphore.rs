//! Go's semaphore — a buffered channel of tokens around each call — becomes the
//! worker count of a pool operator, or `TaskGroup::limit`; where a service
//! keeps a `tokio::sync::Semaphore` of its own, `ctx.run(sem.acquire())`
//! bounds the wait for a permit by the request's context.
//!
//! `cargo run --example semaphore`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_conc::prelude::*;

/// Tracks how many calls run at once and the most ever seen.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    async fn call(&self) {
        let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await; // a slow downstream call
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main]
async fn main() {
    // A stream of 30 requests, at most 3 in flight (Go: `sem := make(chan struct{}, 3)`).
    let stats = Arc::new(InFlight::default());
    let s = Arc::clone(&stats);
    futures::stream::iter(0..30_u32)
        .par_for_each(3, move |id| {
            let s = Arc::clone(&s);
            async move {
                let _request = id;
                s.call().await
            }
        })
        .await;
    println!(
        "par_for_each(3): at most {} calls at once",
        stats.most.load(Ordering::SeqCst)
    );

    // The same bound on ad-hoc tasks (Go: errgroup's SetLimit).
    let stats = Arc::new(InFlight::default());
    let mut group = TaskGroup::<std::convert::Infallible>::new(&TaskContext::background()).limit(2);
    for _ in 0..10 {
        let s = Arc::clone(&stats);
        group.spawn(async move {
            s.call().await;
            Ok(())
        });
    }
    group.wait().await.expect("no task fails");
    println!(
        "TaskGroup::limit(2): at most {} tasks at once",
        stats.most.load(Ordering::SeqCst)
    );

    // Go's `Go` blocks at the limit: `spawn_wait` holds the producer back
    // instead of queueing every task.
    let mut group = TaskGroup::<std::convert::Infallible>::new(&TaskContext::background()).limit(2);
    for _ in 0..4 {
        group
            .spawn_wait(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            })
            .await;
    }
    group.wait().await.expect("no task fails");

    // A semaphore the service owns (Go: `semaphore.Weighted.Acquire(ctx, 1)`):
    // each request waits for a permit only as long as its context allows.
    let db_connections = Arc::new(Semaphore::new(1));
    let busy = Arc::clone(&db_connections)
        .acquire_owned()
        .await
        .expect("open");
    let request = TaskContext::background().with_timeout(Duration::from_millis(20));
    match request.run(db_connections.acquire()).await {
        Ok(permit) => drop(permit.expect("never closed")),
        Err(why) => println!("request gave up waiting for a connection: {why}"),
    }
    drop(busy);

    // The same for a channel receive and a sleep: `run` drops the wait when
    // the context stops, and Tokio's primitives lose nothing by it.
    let (tx, mut rx) = mpsc::channel::<&str>(1);
    let quick = TaskContext::background().with_timeout(Duration::from_millis(5));
    println!("receive: {:?}", quick.run(rx.recv()).await);
    tx.send("late reply").await.expect("receiver alive");
    println!("kept for the next receive: {:?}", rx.recv().await);
    let nap = quick.run(tokio::time::sleep(Duration::from_secs(60))).await;
    println!("sleep: {nap:?}");
}
