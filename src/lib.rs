//! Go's concurrency patterns, done right for Tokio.
//!
//! | Go | tokio-conc |
//! |---|---|
//! | generator: a goroutine sending on a returned channel | [`generate(f)`](generator::generate) (lazy), [`generate_ahead(n, f)`](generator::generate_ahead) / [`s.prefetch(n)`](ConcurrentStreamExt::prefetch) (buffered) |
//! | pipeline: stages joined by channels | chained [`ConcurrentStreamExt`] operators on any `Stream`; [`Pipeline`](pipeline::Pipeline) for named stages with live stats, skip/stop/retry policies |
//! | fan-in: many channels merged into one | [`fan_in(streams)`](fan_in::fan_in), [`FanIn::push`](fan_in::FanIn::push) |
//! | fan-out: several goroutines reading one channel | [`s.fan_out(n)`](ConcurrentStreamExt::fan_out), [`s.broadcast(n, cap)`](ConcurrentStreamExt::broadcast), [`s.partition(n, key)`](ConcurrentStreamExt::partition) |
//! | worker pool: jobs channel, N goroutines, results channel | [`s.par_map(n, f)`](ConcurrentStreamExt::par_map), [`s.par_map_unordered(n, f)`](ConcurrentStreamExt::par_map_unordered), [`WorkerPool`](pool::WorkerPool) |
//! | errgroup | [`s.try_par_map(n, f)`](ConcurrentStreamExt::try_par_map), [`TaskGroup`](pool::TaskGroup) |
//! | semaphore: a buffered channel of tokens | the `workers` bound of every pool operator; [`TaskGroup::limit`](pool::TaskGroup::limit); [`RateLimiter`](rate::RateLimiter) for calls per second |
//! | rate limit: `time.Tick`, a bursty limiter | [`s.rate_limit(Rate::per_second(n).burst(b))`](ConcurrentStreamExt::rate_limit), [`RateLimiter::until_ready`](rate::RateLimiter::until_ready) |
//! | pub/sub: a publisher and subscriber channels | [`Topic`](pubsub::Topic): bounded per-subscriber buffers, [`SlowSubscriber`](pubsub::SlowSubscriber) policies, [`missed`](pubsub::Subscription::missed) counts |
//! | `context.Context`: cancellation, deadline, values | [`TaskContext`] |
//! | quit channel | [`TaskContext::cancel`], dropping a stream |
//! | `select` on data and quit | [`TaskContext::run`], `tokio::select!` on [`TaskContext::cancelled`] |
//! | graceful shutdown: `signal.NotifyContext`, close the inputs, `wg.Wait()`, `http.Server.Shutdown` with a timeout | [`Shutdown::new().on_signals()`](shutdown::Shutdown::on_signals), [`s.close_on(&shutdown)`](ConcurrentStreamExt::close_on), [`shutdown.wait(grace)`](shutdown::Shutdown::wait) → [`ShutdownReport`](shutdown::ShutdownReport) |
//! | a work queue shared by processes: `XREADGROUP`, `XACK`, an `XPENDING` reaper (feature `redis`) | [`RedisSource`](redis::RedisSource) → [`Deliveries`](redis::Deliveries), a `Stream` for the pool operators, acks batched, dead consumers' entries reclaimed; [`RedisSink`](redis::RedisSink) |
//! | `r.Context()`, `http.TimeoutHandler`, a request id middleware (feature `tower`) | [`ContextLayer`](service::ContextLayer) on a tower/axum service: each request runs in a `TaskContext` of its own, cancelled when the client goes away |
//!
//! Everything comes in through the prelude. A request-scoped pipeline — rate
//! limited, charged in parallel on spawned tasks, stored in order — reads:
//!
//! ```
//! use std::time::Duration;
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! struct SessionId(&'static str);
//!
//! async fn charge(order: u32) -> u32 {
//!     // Every call runs with the pool's context current.
//!     let ctx = TaskContext::current().expect("set by the pool");
//!     assert_eq!(ctx.value::<SessionId>().map(|s| s.0), Some("42"));
//!     order * 10
//! }
//!
//! # #[cfg(not(feature = "rate"))] fn main() {}
//! # #[cfg(feature = "rate")]
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let ctx = TaskContext::background()
//!     .with_value(SessionId("42"))
//!     .with_timeout(Duration::from_secs(5));
//!
//! let stored: Vec<u32> = futures::stream::iter(1..=20_u32)
//!     .rate_limit(Rate::per_second(1000).burst(20))
//!     .par_map_unordered(Workers::new(8).context(&ctx).name("charge"), charge)
//!     .par_map(4, |receipt| async move { receipt + 1 }) // ordered
//!     .collect()
//!     .await;
//! assert_eq!(stored.len(), 20);
//! # }
//! ```
//!
//! # Two ways to stop
//!
//! * **Close**: the input stream ends. Every operator finishes the work already
//!   in flight, emits it, then ends its own output — a graceful drain.
//! * **Cancel**: the [`TaskContext`] attached to an operator is cancelled (or its
//!   deadline passes), or the consumer drops the operator's output. In-flight
//!   work is dropped and every task the operator spawned ends. No spawned task
//!   outlives the stream that owns it.
//!
//! # Contexts: one rule
//!
//! Every operator and type that a [`TaskContext`] can stop takes it the same
//! way, and follows the same rule when none is given:
//!
//! * **Given**: `.context(&ctx)` on its builder — [`Workers`](pool::Workers),
//!   [`Branches`](fan_out::Branches), the generators and
//!   [`prefetch`](ConcurrentStreamExt::prefetch), the rate-limit streams,
//!   [`RateLimiter`](rate::RateLimiter) and
//!   [`KeyedRateLimiter`](rate::KeyedRateLimiter),
//!   [`Pipeline`](pipeline::Pipeline), [`Topic`](pubsub::Topic), the Redis
//!   source — or the constructor's argument where one is required
//!   ([`TaskGroup::new`](pool::TaskGroup::new)).
//! * **Not given**: it is bound to [`TaskContext::current`] **at
//!   construction** — where the operator is called or the type is built — if
//!   there is one. So whatever is built inside [`ctx.scope(..)`](TaskContext::scope),
//!   a task started by [`ctx.spawn(..)`](TaskContext::spawn) or a pool's
//!   worker stops when that context is cancelled. With no context current it
//!   has none: only the end of its input or dropping it stops it.
//! * **Read back**: a builder or stream says what it is bound to with
//!   `task_context() -> Option<&TaskContext>`; a running handle
//!   ([`WorkerPool`](pool::WorkerPool), [`TaskGroup`](pool::TaskGroup)) has
//!   `context() -> &TaskContext`. No type has both a `context(&ctx)` setter
//!   and a `context()` getter.
//!
//! **Stopped by a context is never silent success.** A stream that just ends
//! when its context is cancelled says so in its docs: ask `ctx.err()` why. An
//! error that a context can cause — [`Closed`](generator::Closed),
//! [`JobError`](pool::JobError), [`Rejected`](pool::Rejected) and
//! [`RejectReason`](pool::RejectReason),
//! [`RateLimitError`](rate::RateLimitError) — says so the same way: its
//! `context_error()` returns the [`ContextError`], which is also its
//! [`source`](std::error::Error::source).
//!
//! ```
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let request = TaskContext::background();
//! // Built inside the request's scope: bound to it, with no `.context(..)`.
//! let branches = request
//!     .scope(async { futures::stream::iter(0..100).fan_out(2) })
//!     .await;
//! request.cancel();
//! for branch in branches {
//!     assert_eq!(branch.count().await, 0);
//! }
//! # }
//! ```
//!
//! # Key functions
//!
//! Every operator that routes or groups items by key takes the key function
//! in one form, `Fn(&T) -> K + Send + Sync + 'static`: a pure function of the
//! item, which the operator may call from whichever task or thread polls it.
//! The same closure can be handed to [`partition`](ConcurrentStreamExt::partition),
//! [`partition_with`](ConcurrentStreamExt::partition_with) and
//! `rate_limit_by`.
//!
//! # Cargo features
//!
//! * `rate` (on by default): the [`rate`] module and the `rate_limit*`
//!   operators, on `governor`. Without it the crate does not depend on
//!   `governor`.
//! * `redis`: the [`redis`] module, Redis Streams as a source and a sink, on
//!   the `redis` crate.
//! * `tower`: the [`service`] module, a [`TaskContext`] per HTTP request for
//!   tower and axum services.
//!
//! # Bad input
//!
//! A zero worker count, buffer or capacity panics at construction with a message
//! naming the argument, as `tokio::sync::mpsc::channel(0)` does — it never hangs.
//! Operators that spawn tasks panic with the operator's name when used outside a
//! Tokio runtime.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to modules the `rate`, `redis` and `tower` features
// gate; with every feature on (as the docs are checked) each link resolves.
#![cfg_attr(
    not(all(feature = "rate", feature = "redis", feature = "tower")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod context;
pub mod fan_in;
pub mod fan_out;
pub mod generator;
pub mod pipeline;
pub mod pool;
pub mod pubsub;
#[cfg(feature = "rate")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
pub mod rate;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
pub mod shutdown;

mod ext;
mod internal;

pub use context::{ContextError, TaskContext};
pub use ext::ConcurrentStreamExt;

/// The extension trait and the main types: `use tokio_conc::prelude::*;`.
pub mod prelude {
    pub use crate::context::{ContextError, SpanValue, TaskContext};
    pub use crate::ext::ConcurrentStreamExt;

    // generator + fan-in
    pub use crate::fan_in::{FanIn, fan_in};
    pub use crate::generator::{Closed, Yielder, generate, generate_ahead, try_generate};

    // worker pools
    pub use crate::pool::Workers;
    pub use crate::pool::{TaskGroup, WorkerPool};

    // fan-out
    pub use crate::fan_out::Branches;

    // rate limiting
    #[cfg(feature = "rate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
    pub use crate::rate::{KeyedRateLimiter, Rate, RateLimiter};

    // pipelines
    pub use crate::pipeline::{Pipeline, Retry, Stage};

    // graceful shutdown
    pub use crate::shutdown::{Shutdown, ShutdownReport};
    // pub/sub
    pub use crate::pubsub::{Received, SlowSubscriber, Subscription, Topic};
}
