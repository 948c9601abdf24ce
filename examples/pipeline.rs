//! Go's pipeline: stages joined by channels, each closing its output when its
//! input closes. Here each stage is an operator; ending the source drains the
//! whole chain, stage by stage. A `Pipeline` is the same chain with names,
//! live statistics and an error policy per stage.
//!
//! `cargo run --example pipeline`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio_conc::pipeline::BoxError;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    plain_chain().await;
    with_stats().await?;
    Ok(())
}

/// The plain chain: the simplest pipeline, when nobody needs to watch it.
async fn plain_chain() {
    // Stage 1: a generator of numbers. When it returns, the stream ends
    // (Go: `close(out)` at the end of the producing goroutine).
    let numbers = generate(|y: Yielder<u64>| async move {
        for n in 1..=10 {
            y.send(n).await?;
        }
        println!("source: done, closing");
        Ok(())
    });

    // Stage 2: square each number on 3 workers, keeping input order.
    // Stage 3: keep the odd squares.
    // Stage 4: add 1, on 2 workers, in whatever order they finish.
    let results: Vec<u64> = numbers
        .par_map(Workers::new(3).name("square"), |n| async move { n * n })
        .filter(|sq| std::future::ready(sq % 2 == 1))
        .par_map_unordered(2, |sq| async move { sq + 1 })
        .collect()
        .await;

    // Every item the source produced went through every stage before the
    // chain ended: closing drains, it does not drop.
    let mut sorted = results.clone();
    sorted.sort_unstable();
    println!("results: {sorted:?}");
    assert_eq!(sorted, vec![2, 10, 26, 50, 82]);
}

/// The same kind of chain as a `Pipeline`: named stages, a policy each, and
/// statistics readable while it runs.
async fn with_stats() -> Result<(), BoxError> {
    let hiccups = Arc::new(AtomicU32::new(0));
    let lines = futures::stream::iter(["3", "1", "x", "4", "1", "5", "?", "9", "2", "6"]);
    let pipeline: Pipeline<u64, BoxError> = Pipeline::new(lines)
        // A bad line is skipped and counted, not fatal (Akka's resume).
        .stage(Stage::new("parse").skip_errors(), |line| async move {
            Ok(line.parse::<u64>()?)
        })
        // A flaky call, retried with exponential backoff and jitter.
        .stage(
            Stage::new("enrich").workers(4).unordered().retry(
                Retry::exponential(Duration::from_millis(5))
                    .max_attempts(3)
                    .jitter(0.5),
            ),
            move |n| {
                // The service fails the first two calls for 4.
                let hiccup = n == 4 && hiccups.fetch_add(1, Ordering::SeqCst) < 2;
                async move {
                    tokio::time::sleep(Duration::from_millis(10 * n)).await;
                    if hiccup {
                        return Err("enrich: the service hiccuped".into());
                    }
                    Ok(n * 100)
                }
            },
        )
        // The default policy: the first error stops the whole pipeline.
        .stage("store", |n| async move { Ok(n + 1) });

    let stats = pipeline.stats(); // a cheap handle, readable from anywhere
    let watcher = tokio::spawn({
        let stats = stats.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let enrich = stats.stage("enrich").expect("a stage of that name");
            println!(
                "live, at 25 ms: enrich has {} in flight, {} running, {} done",
                enrich.in_flight, enrich.running, enrich.items_out
            );
        }
    });
    let mut stored: Vec<u64> = pipeline.try_collect().await?;
    watcher.await?;
    stored.sort_unstable();
    println!("stored: {stored:?}");
    print!("{}", stats.report());
    Ok(())
}
