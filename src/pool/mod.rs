//! Worker pools that run in parallel on spawned Tokio tasks.
