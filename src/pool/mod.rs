//! Worker pools that run in parallel on spawned Tokio tasks.

mod workers;

pub use workers::Workers;

// WorkerPool and TaskGroup: long-lived pools and Go's errgroup.
mod task_group;
mod worker_pool;

pub use task_group::TaskGroup;
pub use worker_pool::{JobError, JobHandle, PoolStats, RejectReason, Rejected, WorkerPool};
