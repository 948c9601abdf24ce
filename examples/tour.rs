//! A quick tour of every pattern tokio-conc has so far: `cargo run --example tour`.

use std::time::Duration;

use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    println!("== context: a request with a deadline");
    let request = TaskContext::background()
        .with_value("session-42")
        .with_timeout(Duration::from_millis(100));
    let outcome = request
        .run(tokio::time::sleep(Duration::from_secs(5)))
        .await;
    println!(
        "   session {:?}: slow call stopped with {:?}",
        request.value::<&str>(),
        outcome.unwrap_err()
    );
}
