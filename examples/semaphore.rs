//! Go's semaphore — a buffered channel of tokens around each call — becomes the
//! worker count of a pool operator, or `TaskGroup::limit`.
//!
//! `cargo run --example semaphore`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
}
