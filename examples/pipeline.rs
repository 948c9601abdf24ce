//! Go's pipeline: stages joined by channels, each closing its output when its
//! input closes. Here each stage is an operator; ending the source drains the
//! whole chain, stage by stage.
//!
//! `cargo run --example pipeline`

use futures::StreamExt;
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
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
