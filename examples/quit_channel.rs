//! Go's quit channel: a consumer that has seen enough tells the producers to
//! stop. In tokio-conc that is cancelling a `TaskContext` — or, for a single
//! consumer, simply dropping the stream.
//!
//! `cargo run --example quit_channel`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    let quit = TaskContext::background();
    let produced = Arc::new(AtomicUsize::new(0));

    // An endless producer running ahead on its own task, bound to `quit`.
    let counter = Arc::clone(&produced);
    let mut numbers = generate_ahead(4, move |y: Yielder<u64>| async move {
        let mut n = 0;
        loop {
            if let Err(closed) = y.send(n).await {
                println!("producer: stopping ({closed})");
                return Err(closed);
            }
            counter.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
    })
    .context(&quit);

    // The consumer takes what it needs, then signals quit.
    while let Some(n) = numbers.next().await {
        println!("consumer: got {n}");
        if n == 4 {
            println!("consumer: that's enough, quit");
            quit.cancel();
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!(
        "the stream ended after the quit; the producer made {} items in all (at most 5 taken + 4 buffered + 1 in flight)",
        produced.load(Ordering::Relaxed)
    );
}
