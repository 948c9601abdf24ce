//! Worker pools that run in parallel on spawned Tokio tasks.

mod workers;

pub use workers::Workers;
