//! Worker pools that run in parallel on spawned Tokio tasks.
//!
//! The stream operators — [`par_map`](crate::ConcurrentStreamExt::par_map),
//! [`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered),
//! [`par_map_keyed`](crate::ConcurrentStreamExt::par_map_keyed),
//! [`par_for_each`](crate::ConcurrentStreamExt::par_for_each) and their `try_`
//! forms — share one design:
//!
//! * **Parallel.** The function runs on `workers` spawned Tokio tasks, so on a
//!   multi-thread runtime CPU-bound work uses every core (unlike
//!   `buffer_unordered`, which polls every future inside the consumer's task).
//!   At most `workers` calls run at once. The tasks are spawned on the first
//!   poll; building the operator outside a runtime panics with its name.
//! * **Batched.** Work and results cross between the consumer and the workers
//!   in batches, under one lock per batch and with a wake-up only for a side
//!   that is parked. A worker takes at most a fair share of what is queued
//!   and sizes its batches to about 40 µs of work, and a call that has to
//!   wait hands the rest of its batch back, so batching costs no parallelism
//!   on slow items.
//! * **Bounded.** Input is pulled from the source only by the consumer's polls
//!   and only while fewer than `workers + buffer` items are pulled but not yet
//!   yielded (`buffer` is [`Workers::buffer`], by default the larger of 256 and
//!   twice the worker count). The ordered operator's reorder window lives in
//!   the same bound, so a slow head item pauses intake rather than growing
//!   memory.
//! * **Context.** Every call runs with the pool's [`TaskContext`](crate::TaskContext)
//!   current — the one given to [`Workers::context`], else the context current
//!   where the operator was built, else a fresh background one — inside a
//!   `worker` span recording the pool's name and the worker's index.
//!
//! # Stopping
//!
//! * **Input ends:** the items in flight finish and are yielded, then the
//!   output ends, after every worker task has returned.
//! * **Context cancelled:** the workers stop at once (a running call is dropped
//!   at its next `.await`), and the output ends after they have returned.
//! * **Output dropped:** the worker tasks are aborted.
//! * **`try_` failure:** see each operator; the failing item is yielded last.
//! * **Panic in the function:** the workers are aborted and the panic is
//!   resumed, payload intact, in the consumer's `poll_next`.
//!
//! Items pulled from the source but not yet yielded when a pool stops early
//! (cancel, drop, failure or panic) are dropped without a result: none is
//! yielded twice, and none is reported as done. A source that acknowledges
//! items (a queue, a Redis Streams consumer group) should acknowledge an item
//! when its result is yielded — with a `try_` operator, when it is `Ok` — so an
//! item a pool dropped stays unacknowledged at the source and is delivered again.

mod engine;
mod hand_off;
mod par_for_each;
mod par_map;
mod par_map_keyed;
mod try_par_map;
mod workers;

pub(crate) use par_for_each::{par_for_each, try_par_for_each};
pub(crate) use par_map::{par_map, par_map_unordered};
pub(crate) use par_map_keyed::par_map_keyed;
pub(crate) use try_par_map::{try_par_map, try_par_map_unordered};

pub use par_for_each::{ParForEach, TryParForEach};
pub use par_map::{ParMap, ParMapUnordered};
pub use par_map_keyed::ParMapKeyed;
pub use try_par_map::{TryParMap, TryParMapUnordered};
pub use workers::Workers;

// WorkerPool and TaskGroup: long-lived pools and Go's errgroup.
mod task_group;
mod worker_pool;

pub use task_group::{GroupStopped, TaskGroup, TrySpawnError};
pub use worker_pool::{JobError, JobHandle, PoolStats, RejectReason, Rejected, WorkerPool};
