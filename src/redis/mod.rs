//! Redis Streams as a source and a sink (feature `redis`): the same operators
//! running a work queue across processes and machines.
//!
//! A consumer group is the distributed form of Go's "many goroutines reading
//! one channel": each entry of the stream goes to one consumer of the group,
//! is acknowledged when done, and is delivered again — to another consumer if
//! need be — when its first consumer dies.
//!
//! - [`RedisSource`] (a builder) → [`connect`](RedisSource::connect) →
//!   [`Deliveries`], a `Stream` of [`Delivery`]: the entry's id, its fields
//!   (raw [`Fields`] or decoded), its delivery count, and an [`Ack`] handle.
//! - [`RedisSink`] writes a stream's items with pipelined `XADD`s.
//!
//! Needs Redis 6.2 or later (`XAUTOCLAIM`); a single node, or one node per
//! stream key of a cluster (see `docs/distributed.md`).
//!
//! # With the crate's operators
//!
//! Handlers run on a pool; [`Delivery::ack_after`] acknowledges an entry only
//! after its handler returned `Ok`, and records the error of one that failed
//! (the entry stays pending and is retried after `claim_idle`, or goes to the
//! dead-letter stream at `max_deliveries`):
//!
//! ```
//! # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
//! # fn main() { doc_example(|mut source| async move {
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! async fn handle(fields: tokio_conc::redis::Fields) -> Result<u32, BoxError> {
//!     Ok(fields.parse::<u32>("job")? * 2)
//! }
//!
//! let done: Vec<Result<u32, BoxError>> = source
//!     .par_map_unordered(8, |delivery| async move { delivery?.ack_after(handle).await })
//!     .take(10) // a queue never ends; a worker stops by taking, closing or cancelling
//!     .collect()
//!     .await;
//! assert!(done.iter().all(Result::is_ok));
//! # Ok(()) }) }
//! ```
//!
//! A source error (the server went away) comes through the pool as an `Err`
//! item, after which the source ends and the pool drains. With a fail-fast
//! `try_` pool instead, the first handler error ends the run (its entry, and
//! those still in flight, stay pending for another consumer).
//!
//! # Delivery semantics: at-least-once
//!
//! An entry is removed from the group's pending list only by its `XACK`.
//! Whatever stops a worker — a crash, a cancelled context, a dropped stream —
//! entries it read but did not acknowledge stay pending and are delivered
//! again after `claim_idle`, to whichever consumer reclaims them. An entry
//! whose handler finished but whose (batched) acknowledgement had not reached
//! Redis is handled twice. Make handlers idempotent, or write their result
//! and the acknowledgement in one transaction with [`Ack::commit`].
//!
//! # Stopping
//!
//! - **Close** (the stream is dropped or stops being polled, e.g. by
//!   `take_until` or a shutdown's `close_on`): reading stops; deliveries
//!   already handed out finish and are settled; their acknowledgements are
//!   flushed after the last delivery is gone. Entries read ahead but not
//!   handed out are given back at once (made reclaimable without waiting for
//!   `claim_idle`, their delivery count unchanged).
//! - **Cancel** (the attached [`TaskContext`](crate::TaskContext)): the same,
//!   promptly — a blocking read in flight is dropped, not awaited — and the
//!   stream yields [`Error::Stopped`] before it ends. Entries of a read cut
//!   short stay pending until a reclaim.
//!
//! # Connections
//!
//! Each source opens two connections: a multiplexed one for acknowledgements,
//! reclaims and dead letters, and one of its own for the blocking
//! `XREADGROUP ... BLOCK`, which would stall every other command on a shared
//! multiplexed connection. No connection is retried: when the server goes
//! away the source yields [`Error::Disconnected`], naming the server, and
//! ends; restarting the worker (or the source) is the caller's policy.

mod ack;
mod deliveries;
mod delivery;
mod entry;
mod error;
mod shared;
mod sink;
mod source;

pub use deliveries::Deliveries;
pub use delivery::{Ack, Delivery};
pub use entry::{BadEntryId, EntryId, FieldError, Fields};
pub use error::Error;
pub use sink::RedisSink;
pub use source::RedisSource;

/// The Redis client type the source and sink take (the `redis` crate's).
pub use ::redis::Client;

/// The `redis` crate this module is built on, for its types (pipelines,
/// connection settings) at the version this crate uses.
pub use ::redis as driver;

/// A [`Client`] for `url` (`redis://host:port/db`, `rediss://` for TLS where
/// the driver has it, `unix:///path`), or [`Error::InvalidUrl`]. Opening
/// connects to nothing; the first connection is made by
/// [`RedisSource::connect`] or [`RedisSink::write_all`].
///
/// ```
/// let client = tokio_conc::redis::open("redis://127.0.0.1:6379/").unwrap();
/// assert!(tokio_conc::redis::open("http://example").is_err());
/// # let _ = client;
/// ```
pub fn open(url: &str) -> Result<Client, Error> {
    Client::open(url).map_err(|source| Error::InvalidUrl {
        url: url.to_owned(),
        source,
    })
}
