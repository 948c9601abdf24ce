//! Fan-out, fan-in: numbers from a generator are squared by three workers,
//! whichever is free takes the next number, and the results are merged back
//! into one stream and printed.
//!
//! Run with `cargo run --example fan_out_fan_in`.

use std::time::Duration;

use futures::StreamExt;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    // The generator: a lazy stream, run only when a worker asks for a number.
    let numbers = generate(|y: Yielder<u64>| async move {
        for n in 1..=12 {
            y.send(n).await?;
        }
        Ok(())
    });

    // Fan-out: each number goes to exactly one of three workers.
    let workers = numbers
        .fan_out(3)
        .into_iter()
        .enumerate()
        .map(|(id, jobs)| {
            jobs.then(move |n| async move {
                // Uneven work: a worker that is busy longer takes fewer numbers.
                tokio::time::sleep(Duration::from_millis(n % 4 * 5)).await;
                (id, n, n * n)
            })
            // Each worker runs on its own task, like a goroutine.
            .prefetch(1)
        });

    // Fan-in: merge the workers' results into one stream.
    let mut results = fan_in(workers);

    let mut total = 0;
    while let Some((worker, n, square)) = results.next().await {
        println!("worker {worker}: {n}² = {square}");
        total += square;
    }
    println!("sum of squares: {total}");
    assert_eq!(total, (1..=12).map(|n| n * n).sum::<u64>());
}
