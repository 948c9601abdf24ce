//! Worker pools that run in parallel on spawned Tokio tasks.
//!
//! The stream operators — [`par_map`](crate::ConcurrentStreamExt::par_map),
//! [`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered),
//! [`par_map_keyed`](crate::ConcurrentStreamExt::par_map_keyed),
//! [`par_for_each`](crate::ConcurrentStreamExt::par_for_each) and their `try_`
//! forms — are one engine, [`PoolStream`] (or [`PoolFuture`] for the
//! `for_each` forms), with one design:
//!
//! * **Parallel.** The function runs on `workers` spawned Tokio tasks, so on a
//!   multi-thread runtime CPU-bound work uses every core (unlike
//!   `buffer_unordered`, which polls every future inside the consumer's task).
//!   At most `workers` calls run at once. The tasks are spawned on the first
//!   poll; building the operator outside a runtime panics with its name.
//! * **Batched.** Work and results cross between the consumer and the workers
//!   in batches, under one lock per batch and with a wake-up only for a side
//!   that is parked. A worker takes at most a fair share of what is queued
//!   and sizes its batches to about 40 µs of work, so batching costs no
//!   parallelism on slow items.
//! * **Never behind a waiting call.** Before a worker awaits a call that is
//!   pending, it hands over what it holds: its finished results, and the
//!   unstarted rest of its batch, which an idle worker takes. A parked
//!   consumer is woken for those results unless the call finishes within a
//!   few scheduler turns (it only yielded). So a finished result never waits
//!   behind a call that is still waiting, and a pool of one worker whose
//!   calls wait for the consumer (a request/response loop) runs like the
//!   sequential `then`.
//! * **Bounded.** Input is pulled from the source only by the consumer's polls
//!   and only while fewer than `workers + buffer` items are pulled but not yet
//!   yielded (`buffer` is [`Workers::buffer_size`]: 256, or twice the worker
//!   count if that is more, unless set). The ordered operators' reorder window
//!   lives in the same bound, so a slow head item pauses intake rather than
//!   growing memory.
//! * **Context.** A pool is bound to the [`TaskContext`](crate::TaskContext)
//!   given to [`Workers::context`], else to the one current where the
//!   operator is called ([`TaskContext::current`](crate::TaskContext::current)),
//!   else to none — the crate's one rule for every operator. Every call runs
//!   with that context current, inside a `worker` span recording the pool's
//!   name and the worker's index. [`PoolStream::task_context`] says which.
//!
//! # `try_` operators
//!
//! They follow futures' `try_` convention: the input is a stream of
//! `Result<T, E>` (`.map(Ok)` makes one of any stream), the function gets
//! each `Ok` value and returns `Result<U, E>`, and the first `Err` — from the
//! input or from a call — is yielded last and ends the output. So fallible
//! stages chain: `s.try_par_map(4, parse).try_par_map(8, store)`. `E` must
//! implement `From<`[`ContextError`](crate::ContextError)`>`, as
//! `Box<dyn Error + Send + Sync>` and most application error types do.
//!
//! # Stopping
//!
//! * **Input ends:** the items in flight finish and are yielded, then the
//!   output ends, after every worker task has returned.
//! * **Context cancelled** (or past its deadline): no call starts after it
//!   (once `cancel()` has returned; a worker on another thread may start one
//!   while `cancel()` is still running);
//!   running calls are dropped at their next `.await`; nothing more is
//!   yielded. A plain operator's output then just ends — ask the context
//!   ([`TaskContext::err`](crate::TaskContext::err)) why; a `try_` operator
//!   yields `Err(E::from(context_error))` last, and
//!   [`try_par_for_each`](crate::ConcurrentStreamExt::try_par_for_each)
//!   returns it. A run cut short never looks complete.
//! * **Output dropped:** the worker tasks are aborted.
//! * **`try_` failure:** see each operator; the failing item is yielded last,
//!   once the other workers have returned.
//! * **Panic in the function:** the workers are aborted and the panic is
//!   resumed, payload intact, in the consumer's `poll_next` — also when an
//!   error, a cancel or the input's end races it: a pool ends only after its
//!   workers have returned, and resumes a panic any of them caught before it
//!   yields its last item.
//!
//! Items pulled from the source but not yet yielded when a pool stops early
//! (cancel, drop, failure or panic) are dropped without a result: none is
//! yielded twice, and none is reported as done. A source that acknowledges
//! items (a queue, a Redis Streams consumer group) should acknowledge an item
//! when its result is yielded — with a `try_` operator, when it is `Ok` — so an
//! item a pool dropped stays unacknowledged at the source and is delivered again.

mod engine;
mod hand_off;
mod mapping;
mod par_for_each;
mod par_map;
mod par_map_keyed;
mod stream;
mod try_par_map;
mod worker;
mod workers;

pub(crate) use par_for_each::{PAR_FOR_EACH, TRY_PAR_FOR_EACH};
pub(crate) use par_map::{PAR_MAP, PAR_MAP_UNORDERED};
pub(crate) use par_map_keyed::par_map_keyed;
pub(crate) use stream::build;
pub(crate) use try_par_map::{TRY_PAR_MAP, TRY_PAR_MAP_UNORDERED};

pub use mapping::{Fallible, Mapping, Plain};
pub use par_for_each::{ParForEach, PoolFuture, TryParForEach};
pub use par_map::{ParMap, ParMapUnordered};
pub use par_map_keyed::ParMapKeyed;
pub use stream::PoolStream;
pub use try_par_map::{TryParMap, TryParMapUnordered};
pub use workers::Workers;

// WorkerPool and TaskGroup: long-lived pools and Go's errgroup.
mod task_group;
mod worker_pool;

pub use task_group::{GroupStopped, TaskGroup, TrySpawnError};
pub use worker_pool::{JobError, JobHandle, PoolStats, RejectReason, Rejected, WorkerPool};
