//! A generator with a "done" stop, Go's classic: a producer counts up; the
//! consumer takes a few numbers and then walks away, and the producer notices.
//!
//! `cargo run --example generator`

use std::time::Duration;

use futures::StreamExt;
use tokio_conc::generator::{Closed, Yielder};
use tokio_conc::prelude::*;

/// Counts up from `start`, for as long as anyone listens.
async fn count_from(start: u64, y: Yielder<u64>) -> Result<(), Closed> {
    let mut n = start;
    loop {
        if let Err(stop) = y.send(n).await {
            println!("   producer: could not send {n}: {stop}; stopping");
            return Err(stop);
        }
        n += 1;
    }
}

#[tokio::main]
async fn main() {
    println!("== lazy: the producer runs only when the consumer asks");
    let firsts: Vec<u64> = generate(|y| count_from(1, y)).take(3).collect().await;
    println!(
        "   consumer took {firsts:?}, then dropped the stream (the producer is dropped with it)"
    );

    println!("== ahead: the producer runs on its own task, 4 items ahead");
    let mut numbers = generate_ahead(4, |y| count_from(100, y));
    for _ in 0..3 {
        println!("   consumer got {:?}", numbers.next().await);
    }
    println!("   consumer is done: drop = Go's close(done)");
    drop(numbers);
    tokio::time::sleep(Duration::from_millis(10)).await; // let the producer print

    println!("== with a context: cancelling it stops the producer");
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(35));
    let mut ticks = generate_ahead(1, |y| async move {
        let mut n = 0_u64;
        let stop = loop {
            if let Err(stop) = y.send(n).await {
                break stop;
            }
            n += 1;
        };
        println!("   ticker: {stop}");
        Err(stop)
    })
    .context(&ctx);
    while let Some(tick) = ticks.next().await {
        println!("   tick {tick}");
        tokio::time::sleep(Duration::from_millis(10)).await; // a slow consumer
    }
    println!("   stream ended: {:?}", ctx.err());
    tokio::time::sleep(Duration::from_millis(10)).await;
}
