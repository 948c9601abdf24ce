//! Fan-in: several producers, each on its own task with its own channel,
//! merged into one stream, Go's `fanIn`. Another producer joins while the
//! consumer is waiting.
//!
//! `cargo run --example fan_in`

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

/// A producer task sending `count` messages, one every `every`.
fn producer(name: &'static str, count: u32, every: Duration) -> ReceiverStream<String> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for i in 1..=count {
            tokio::time::sleep(every).await;
            if tx.send(format!("{name} #{i}")).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[tokio::main]
async fn main() {
    let mut merged = fan_in([
        producer("fast", 5, Duration::from_millis(10)),
        producer("slow", 2, Duration::from_millis(25)),
    ]);

    // A late producer joins through a handle while the consumer waits.
    let joiner = merged.handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        println!("   (late producer joins)");
        let _ = joiner.push(producer("late", 2, Duration::from_millis(5)));
        // The handle is dropped here: once every input ends, so does `merged`.
    });

    while let Some(message) = merged.next().await {
        println!("   {message}");
    }
    println!("   every producer finished: the merged stream ended");
}
