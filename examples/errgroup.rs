//! Go's errgroup: fetch several URLs at once; the first failure cancels the
//! fetches still running, and `wait` reports that first failure.
//!
//! Run with `cargo run --example errgroup`.

use std::time::Duration;

use tokio::time::Instant;
use tokio_conc::prelude::*;

/// A pretend HTTP GET: takes `latency`, and fails for URLs containing "broken".
/// It watches the current context, as a real client given the context would.
async fn fetch(url: &'static str, latency: Duration) -> Result<usize, String> {
    let ctx = TaskContext::current().expect("runs inside the group");
    let started = Instant::now();
    match ctx.run(tokio::time::sleep(latency)).await {
        Err(stopped) => {
            println!("  {url}: gave up after {:?} ({stopped})", started.elapsed());
            Err(format!("{url}: {stopped}"))
        }
        Ok(()) if url.contains("broken") => {
            println!("  {url}: failed after {:?}", started.elapsed());
            Err(format!("{url}: 503 Service Unavailable"))
        }
        Ok(()) => {
            println!("  {url}: fetched in {:?}", started.elapsed());
            Ok(url.len() * 100)
        }
    }
}

#[tokio::main]
async fn main() {
    let urls = [
        ("https://example.com/", 100),
        ("https://example.org/catalog", 150),
        ("https://example.net/broken", 200),
        ("https://example.com/slow-report", 1_000),
        ("https://example.org/archive", 2_000),
    ];

    println!("fetching {} URLs, at most 4 at a time:", urls.len());
    let started = Instant::now();
    let mut group = TaskGroup::new(&TaskContext::background()).limit(4);
    for (url, millis) in urls {
        group.spawn(async move { fetch(url, Duration::from_millis(millis)).await.map(drop) });
    }
    match group.wait().await {
        Ok(()) => println!("all fetched"),
        Err(first) => println!("first error: {first}"),
    }
    println!(
        "done in {:?}, not the 2 s the slowest fetch needs",
        started.elapsed()
    );

    println!("\nthe same with keep_going: every fetch runs, every error is kept:");
    let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    for (url, millis) in urls.into_iter().take(3) {
        group.spawn(async move { fetch(url, Duration::from_millis(millis)).await.map(drop) });
    }
    println!("errors: {:?}", group.wait_all().await);
}
