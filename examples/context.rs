//! Go's request context: a request with a timeout, whose workers log its session
//! ID and stop when the deadline passes.
//!
//! `cargo run --example context`

use std::fmt;
use std::time::Duration;

use tokio_conc::prelude::*;

/// The request's session, logged by every worker through the context's span.
struct SessionId(String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SpanValue for SessionId {
    const FIELD: &'static str = "session_id";
}

/// A lookup that takes `cost`, unless the request's context gives up first.
async fn lookup(name: &'static str, cost: Duration) -> Result<String, ContextError> {
    let ctx = TaskContext::current().expect("workers run inside the request context");
    tracing::info!(name, ?cost, "lookup started");
    let result = ctx.run(tokio::time::sleep(cost)).await;
    match &result {
        Ok(()) => tracing::info!(name, "lookup done"),
        Err(err) => tracing::warn!(name, %err, "lookup abandoned"),
    }
    result.map(|()| format!("{name}: ok"))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();

    let request = TaskContext::background()
        .with_span_value(SessionId("42".into()))
        .with_timeout(Duration::from_millis(150));

    let lookups = [
        ("profile", Duration::from_millis(20)),
        ("orders", Duration::from_millis(80)),
        ("recommendations", Duration::from_secs(2)),
    ];
    let handles: Vec<_> = lookups
        .into_iter()
        .map(|(name, cost)| request.spawn(lookup(name, cost)))
        .collect();

    for handle in handles {
        match handle.await.expect("lookup task panicked") {
            Ok(answer) => println!("{answer}"),
            Err(err) => println!("gave up: {err}"),
        }
    }
    println!("request ended with: {:?}", request.err());
}
