//! Rate limiting, in the two classic forms of Go's course material:
//!
//! 1. a steady tick: one request every 200 ms (Go: `time.Tick` in a loop);
//! 2. a bursty limiter: the first 3 requests at once, then one every 200 ms
//!    (Go: a buffered channel of ticks, pre-filled with 3).
//!
//! Then the same quota as a plain limiter, for calls that are not a stream.
//!
//! `cargo run --example rate_limit` (about 2 s).

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    let every_200ms = Duration::from_millis(200);

    println!("steady: one request every 200 ms");
    let start = Instant::now();
    futures::stream::iter(1..=5)
        .rate_limit(Rate::every(every_200ms))
        .for_each(|request| async move {
            println!(
                "  request {request} at {:>4} ms",
                start.elapsed().as_millis()
            );
        })
        .await;

    println!("bursty: 3 at once, then one every 200 ms");
    let start = Instant::now();
    futures::stream::iter(1..=5)
        .rate_limit(Rate::every(every_200ms).burst(3))
        .for_each(|request| async move {
            println!(
                "  request {request} at {:>4} ms",
                start.elapsed().as_millis()
            );
        })
        .await;

    println!("a plain limiter shared by two tasks: 5/s in total");
    let limiter = RateLimiter::new(Rate::per_second(5));
    let start = Instant::now();
    let calls = ["a", "b"].map(|task| {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for call in 1..=2 {
                limiter.until_ready().await.expect("no context attached");
                println!(
                    "  task {task} call {call} at {:>4} ms",
                    start.elapsed().as_millis()
                );
            }
        })
    });
    for call in calls {
        call.await.expect("the task does not panic");
    }
}
