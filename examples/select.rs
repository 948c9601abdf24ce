//! Go's `select` on a data channel and a quit/timeout: `ctx.run(fut)` for the
//! common case, `tokio::select!` with `ctx.cancelled()` for the general one.
//!
//! `cargo run --example select`

use std::time::Duration;

use futures::StreamExt;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(120));

    // Data arrives every 50 ms from a producer running ahead of us.
    let mut ticks = generate_ahead(1, |y: Yielder<u32>| async move {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            y.send(n).await?;
        }
        Ok(())
    });

    // select { case v := <-data: ...; case <-ctx.Done(): return }
    loop {
        tokio::select! {
            // `cancelled()` is cancel-safe, and so is `next()` on a stream.
            () = ctx.cancelled() => {
                println!("quit: {}", ctx.err().expect("cancelled"));
                break;
            }
            tick = ticks.next() => match tick {
                Some(n) => println!("data: tick {n}"),
                None => break,
            },
        }
    }

    // The short form of the same thing for one future.
    let late = ctx.run(tokio::time::sleep(Duration::from_secs(1))).await;
    println!("ctx.run after the deadline: {late:?}");
}
