//! [`ConcurrentStreamExt`]: the operators, as methods on every `Stream`.
//!
//! A thin façade: each method documents the operator and delegates, in one
//! line, to the module that implements it.

use futures::Stream;

// rate limiting
#[cfg(feature = "rate")]
use std::hash::Hash;

#[cfg(feature = "rate")]
use crate::rate::{Keyed, KeyedRateLimiter, Rate, RateLimit, RateLimiter, Weighted};

/// Concurrency operators for every [`Stream`]: `use tokio_conc::prelude::*;`
/// brings them in.
pub trait ConcurrentStreamExt: Stream {
    // ----------------------------------------------------------------------
    // generator

    /// Drives this stream on a task of its own, up to `buffer` items ahead of
    /// the consumer (Go's buffered channel between two goroutines): slow
    /// production overlaps with slow consumption.
    ///
    /// The task pulls an item only when the buffer has room, so at most
    /// `buffer` items are taken from `self` before the consumer asks for them.
    /// Dropping the returned stream stops the task and drops `self`. A panic
    /// in `self` is resumed in the consumer.
    ///
    /// # Panics
    ///
    /// If `buffer` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let squares = futures::stream::iter(1..=5_u32).map(|n| n * n).prefetch(2);
    /// assert_eq!(squares.collect::<Vec<_>>().await, [1, 4, 9, 16, 25]);
    /// # }
    /// ```
    fn prefetch(self, buffer: usize) -> crate::generator::Prefetch<Self::Item>
    where
        Self: Sized + Send + 'static,
        Self::Item: Send + 'static,
    {
        crate::generator::prefetch(self, buffer)
    }

    // ----------------------------------------------------------------------
    // worker pools

    /// Runs `f` on every item on `workers` spawned Tokio tasks and yields the
    /// results **in input order** — Go's worker pool, with real parallelism on
    /// a multi-thread runtime (unlike `buffer_unordered`).
    ///
    /// `workers` is a count or a [`Workers`](crate::pool::Workers) with a
    /// context, buffer and name. At most `workers` calls run at once; at most
    /// `workers + buffer` items are pulled ahead of the output, so a slow head
    /// item pauses intake. A finished result never waits behind a call that is
    /// still running. Ends when the input has ended and every result is
    /// yielded. Without [`Workers::context`](crate::pool::Workers::context),
    /// the pool is bound to the context current here, if any; when its
    /// context stops it the output just ends (ask
    /// [`TaskContext::err`](crate::TaskContext::err) why). See
    /// [`pool`](crate::pool) for cancellation, panics and what a stopped
    /// pool does with items it pulled.
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let lengths: Vec<usize> = futures::stream::iter(["go", "tokio", "rust"])
    ///     .par_map(Workers::new(2).name("measure"), |word| async move { word.len() })
    ///     .collect()
    ///     .await;
    /// assert_eq!(lengths, [2, 5, 4]);
    /// # }
    /// ```
    fn par_map<F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::ParMap<Self, Fut::Output>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::PAR_MAP)
    }

    /// Like [`par_map`](Self::par_map), but yields each result **as soon as
    /// it is done**: the fastest of the pool operators.
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let total: u64 = futures::stream::iter(1..=100_u64)
    ///     .par_map_unordered(8, |x| async move { x * 2 })
    ///     .fold(0, |sum, x| async move { sum + x })
    ///     .await;
    /// assert_eq!(total, 10_100);
    /// # }
    /// ```
    fn par_map_unordered<F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::ParMapUnordered<Self, Fut::Output>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::PAR_MAP_UNORDERED)
    }

    /// Runs `f` on every item on `workers` spawned tasks; the future is done
    /// when every item has been handled and every worker has returned (or
    /// when the pool's context stopped the run: ask it why).
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// futures::stream::iter(1..=3)
    ///     .par_for_each(2, move |x| {
    ///         let tx = tx.clone();
    ///         async move { tx.send(x * 10).unwrap() }
    ///     })
    ///     .await;
    /// let mut seen = Vec::new();
    /// while let Some(x) = rx.recv().await { seen.push(x); }
    /// seen.sort();
    /// assert_eq!(seen, [10, 20, 30]);
    /// # }
    /// ```
    fn par_for_each<F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::ParForEach<Self>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::PAR_FOR_EACH)
    }

    /// [`par_map`](Self::par_map) for a stream of `Result`s and a fallible
    /// `f`, fail-fast like Go's errgroup, in futures' `try_` convention: `f`
    /// gets each `Ok` value; the first `Err`, from the input or from `f`, is
    /// yielded after every item before it and ends the stream. Once an item
    /// fails, intake stops and queued items after it are dropped unstarted;
    /// the items before it finish and are yielded, then its `Err`, once the
    /// other workers have returned. So the output is the sequential `map`'s up
    /// to and including its first `Err`, and fallible stages chain:
    /// `s.try_par_map(4, parse).try_par_map(8, store)`.
    ///
    /// When the pool's context stops the run (cancelled, or past its
    /// deadline), nothing more is yielded but `Err(E::from(context_error))`:
    /// a run cut short never looks complete. Hence `E: From<ContextError>`,
    /// which `Box<dyn Error + Send + Sync>` and most application errors have.
    /// A plain stream becomes a stream of `Result`s with `.map(Ok)`.
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::{StreamExt, TryStreamExt};
    /// use tokio_conc::prelude::*;
    ///
    /// type Error = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// async fn parse(line: &'static str) -> Result<u32, Error> {
    ///     Ok(line.trim().parse()?)
    /// }
    ///
    /// async fn store(n: u32) -> Result<u32, Error> {
    ///     if n > 100 { Err(format!("{n} is too big").into()) } else { Ok(n) }
    /// }
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let lines = futures::stream::iter(["1", " 2", "3 "]).map(Ok::<_, Error>);
    /// let stored: Vec<u32> = lines.try_par_map(4, parse).try_par_map(8, store).try_collect().await.unwrap();
    /// assert_eq!(stored, [1, 2, 3]);
    ///
    /// let lines = futures::stream::iter(["1", "x", "3"]).map(Ok::<_, Error>);
    /// let out: Vec<Result<u32, Error>> = lines.try_par_map(4, parse).try_par_map(8, store).collect().await;
    /// assert_eq!(out.len(), 2, "Ok(1), then the parse error, then the end");
    /// assert!(out[1].is_err());
    /// # }
    /// ```
    fn try_par_map<T, E, U, F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParMap<Self, U>
    where
        Self: Sized + Stream<Item = Result<T, E>>,
        T: Send + 'static,
        E: From<crate::ContextError> + Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::TRY_PAR_MAP)
    }

    /// [`par_map_unordered`](Self::par_map_unordered) for a stream of
    /// `Result`s and a fallible `f`, fail-fast like Go's errgroup: on the
    /// first `Err` (from the input or from `f`) every item not yet started is
    /// dropped and the other calls are cancelled; the successes that reached
    /// the consumer with it are yielded, then that `Err`, once the workers
    /// have returned, and the stream ends. Other items are dropped without a
    /// result (see [`pool`](crate::pool) for what that means for
    /// acknowledging sources). A stop by the pool's context ends the stream
    /// with `Err(E::from(context_error))`, as in [`try_par_map`](Self::try_par_map).
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Error {
    ///     Unlucky(u32),
    ///     Stopped(ContextError),
    /// }
    ///
    /// impl From<ContextError> for Error {
    ///     fn from(e: ContextError) -> Self {
    ///         Error::Stopped(e)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let out: Vec<Result<u32, Error>> = futures::stream::iter(1..=1000_u32)
    ///     .map(Ok)
    ///     .try_par_map_unordered(4, |x| async move {
    ///         if x == 3 { Err(Error::Unlucky(x)) } else { Ok(x) }
    ///     })
    ///     .collect()
    ///     .await;
    /// assert_eq!(out.last(), Some(&Err(Error::Unlucky(3))));
    /// assert!(out.len() < 1000, "the rest was cancelled");
    /// # }
    /// ```
    fn try_par_map_unordered<T, E, U, F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParMapUnordered<Self, U>
    where
        Self: Sized + Stream<Item = Result<T, E>>,
        T: Send + 'static,
        E: From<crate::ContextError> + Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::TRY_PAR_MAP_UNORDERED)
    }

    /// [`par_for_each`](Self::par_for_each) for a stream of `Result`s and a
    /// fallible `f`: `Ok(())` if every item succeeded, else the first `Err`
    /// (from the input or from `f`), after the other workers were cancelled
    /// and have returned (Go's errgroup `Wait`). When the pool's context stops
    /// the run, `Err(E::from(context_error))`: a run cut short is never
    /// `Ok(())`.
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// type Error = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let all_ok = futures::stream::iter(1..=5)
    ///     .map(Ok::<_, Error>)
    ///     .try_par_for_each(2, |_| async { Ok(()) })
    ///     .await;
    /// assert!(all_ok.is_ok());
    ///
    /// let ctx = TaskContext::background();
    /// ctx.cancel();
    /// let stopped = futures::stream::iter(1..=5)
    ///     .map(Ok::<_, Error>)
    ///     .try_par_for_each(Workers::new(2).context(&ctx), |_| async { Ok(()) })
    ///     .await;
    /// assert_eq!(stopped.unwrap_err().to_string(), "context cancelled");
    /// # }
    /// ```
    fn try_par_for_each<T, E, F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParForEach<Self>
    where
        Self: Sized + Stream<Item = Result<T, E>>,
        T: Send + 'static,
        E: From<crate::ContextError> + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        crate::pool::build(self, workers, f, crate::pool::TRY_PAR_FOR_EACH)
    }

    /// Runs `f` on `workers` spawned tasks, **in order within a key and in
    /// parallel across keys** (Akka's `mapAsyncPartitioned`): items whose
    /// `key_fn` keys are equal are handled one at a time, in input order, and
    /// their results are yielded in that order; results of different keys
    /// interleave as they finish.
    ///
    /// `key_fn` takes the item by reference, `Fn(&T) -> K + Send + Sync +
    /// 'static`, as every key function in the crate does. Keys are hashed onto
    /// the workers, so two keys that share a worker also take turns; a hot
    /// key can fill the `workers + buffer` window and pause intake, never grow
    /// memory.
    ///
    /// # Panics
    ///
    /// If `workers` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let out: Vec<(u8, u32)> = futures::stream::iter((0..30_u32).map(|i| ((i % 3) as u8, i)))
    ///     .par_map_keyed(3, |(user, _)| *user, |event| async move { event })
    ///     .collect()
    ///     .await;
    /// for user in 0..3 {
    ///     let seq: Vec<u32> = out.iter().filter(|(u, _)| *u == user).map(|(_, i)| *i).collect();
    ///     assert!(seq.windows(2).all(|w| w[0] < w[1]), "per-key order kept");
    /// }
    /// # }
    /// ```
    fn par_map_keyed<K, KF, F, Fut>(
        self,
        workers: impl Into<crate::pool::Workers>,
        key_fn: KF,
        f: F,
    ) -> crate::pool::ParMapKeyed<Self, Fut::Output>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        K: std::hash::Hash,
        KF: Fn(&Self::Item) -> K + Send + Sync + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        crate::pool::par_map_keyed(self, workers, key_fn, f)
    }

    // ----------------------------------------------------------------------
    // fan-out

    /// Splits the stream into `n` branches; each item goes to exactly one, the
    /// first to ask (Go: several goroutines reading one channel). Branches are
    /// `Send + 'static` streams to move into tasks; the source is read only when
    /// a branch asks, so a dropped branch loses nothing. All end when the source
    /// ends. Pass [`Branches::new(n).context(&ctx)`](crate::fan_out::Branches::context)
    /// to end every branch when `ctx` is cancelled. See [`fan_out`](crate::fan_out::fan_out).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let workers: Vec<_> = futures::stream::iter(0..1000)
    ///     .fan_out(4)
    ///     .into_iter()
    ///     .map(|branch| tokio::spawn(branch.count()))
    ///     .collect();
    /// let mut total = 0;
    /// for worker in workers {
    ///     total += worker.await.unwrap();
    /// }
    /// assert_eq!(total, 1000);
    /// # }
    /// ```
    fn fan_out(
        self,
        n: impl Into<crate::fan_out::Branches>,
    ) -> Vec<crate::fan_out::Branch<Self::Item>>
    where
        Self: Sized + Send + 'static,
    {
        crate::fan_out::fan_out(self, n)
    }

    /// Splits the stream into `n` branches that each get every item (cloned).
    /// Each buffers at most `capacity` items; the slowest live branch applies
    /// backpressure; nothing is lost; a dropped branch stops counting. See
    /// [`broadcast`](crate::fan_out::broadcast).
    ///
    /// # Panics
    ///
    /// If `n` or `capacity` is 0.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let branches = futures::stream::iter(["a", "b"]).broadcast(3, 16);
    /// let seen = futures::future::join_all(branches.into_iter().map(|b| b.collect::<Vec<_>>())).await;
    /// assert_eq!(seen, vec![vec!["a", "b"]; 3]);
    /// # }
    /// ```
    fn broadcast(
        self,
        n: impl Into<crate::fan_out::Branches>,
        capacity: usize,
    ) -> Vec<crate::fan_out::BroadcastBranch<Self::Item>>
    where
        Self: Sized + Send + 'static,
        Self::Item: Clone,
    {
        crate::fan_out::broadcast(self, n, capacity)
    }

    /// Splits the stream into `n` lanes by `key_fn`: equal keys share a lane, in
    /// order. Lanes buffer [`DEFAULT_LANE_CAPACITY`](crate::fan_out::DEFAULT_LANE_CAPACITY)
    /// items; a full lane applies backpressure; items for a dropped lane are
    /// skipped and counted ([`Lane::skipped`](crate::fan_out::Lane::skipped)). See [`partition`](crate::fan_out::partition).
    ///
    /// `key_fn` is a [key function](crate#key-functions): `Fn(&T) -> K + Send +
    /// Sync + 'static`, as everywhere in the crate.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let orders = futures::stream::iter([("ann", 1), ("bob", 2), ("ann", 3)]);
    /// let lanes = orders.partition(4, |(customer, _): &(&str, u32)| *customer);
    /// let lanes = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<_>>())).await;
    /// let ann = lanes.iter().find(|lane| lane.contains(&("ann", 1))).unwrap();
    /// assert!(ann.ends_with(&[("ann", 3)]));
    /// # }
    /// ```
    fn partition<K, F>(
        self,
        n: impl Into<crate::fan_out::Branches>,
        key_fn: F,
    ) -> Vec<crate::fan_out::Lane<Self::Item>>
    where
        Self: Sized + Send + 'static,
        K: std::hash::Hash,
        F: Fn(&Self::Item) -> K + Send + Sync + 'static,
    {
        crate::fan_out::partition(self, n, key_fn)
    }

    /// [`partition`](ConcurrentStreamExt::partition) with lanes of `capacity`
    /// items each. See [`partition_with`](crate::fan_out::partition_with).
    ///
    /// # Panics
    ///
    /// If `n` or `capacity` is 0.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let lanes = futures::stream::iter(0..100).partition_with(2, 4, |x: &u32| *x % 10);
    /// let sizes = futures::future::join_all(lanes.into_iter().map(|l| l.count())).await;
    /// assert_eq!(sizes.iter().sum::<usize>(), 100);
    /// # }
    /// ```
    fn partition_with<K, F>(
        self,
        n: impl Into<crate::fan_out::Branches>,
        capacity: usize,
        key_fn: F,
    ) -> Vec<crate::fan_out::Lane<Self::Item>>
    where
        Self: Sized + Send + 'static,
        K: std::hash::Hash,
        F: Fn(&Self::Item) -> K + Send + Sync + 'static,
    {
        crate::fan_out::partition_with(self, n, capacity, key_fn)
    }

    // ----------------------------------------------------------------------
    // rate limiting

    /// Lets items through at `rate` (Go's `time.Tick` loop, or its bursty
    /// limiter with [`Rate::burst`]): the first `burst` at once, then one per
    /// [`Rate::interval`]. An item over the quota waits, keeping the order;
    /// [`RateLimit::drop_over_quota`] and [`RateLimit::fail_over_quota`] choose
    /// otherwise, and [`RateLimit::context`] binds the waits to a
    /// [`TaskContext`](crate::TaskContext). Built on governor's GCRA, on Tokio's
    /// clock (paused time included).
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use tokio::time::Instant;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let at: Vec<u128> = futures::stream::iter(0..4)
    ///     .rate_limit(Rate::every(Duration::from_millis(200)))
    ///     .map(|_| start.elapsed().as_millis())
    ///     .collect()
    ///     .await;
    /// assert_eq!(at, [0, 200, 400, 600]);
    /// # }
    /// ```
    #[cfg(feature = "rate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
    fn rate_limit(self, rate: Rate) -> RateLimit<Self, RateLimiter>
    where
        Self: Sized,
    {
        crate::rate::rate_limit(self, RateLimiter::new(rate))
    }

    /// Like [`rate_limit`](Self::rate_limit), drawing on a quota shared with
    /// every other user of `limiter` (its clones, other streams, plain
    /// [`RateLimiter::until_ready`] calls): their sum stays within the rate.
    /// The limiter's context, if any, binds this stream too.
    ///
    /// An item that has to wait reserves its permits for the instant they
    /// will be free, so the stream keeps its place against every later
    /// caller (Go's reservations), and waiters are served in the order they
    /// came. A stream left half-way through a wait and never polled again
    /// costs the others only the one item's permits; dropping it gives them
    /// back.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::new(Rate::per_second(10).burst(4));
    /// let a = futures::stream::iter(0..10).rate_limit_shared(&limiter).drop_over_quota();
    /// let b = futures::stream::iter(0..10).rate_limit_shared(&limiter).drop_over_quota();
    /// assert_eq!(a.count().await + b.count().await, 4, "one burst between them");
    /// # }
    /// ```
    ///
    /// `limiter` may be given by reference (`&limiter`) or by value (a
    /// clone, or the limiter itself): either way the stream holds a clone,
    /// which shares the one limiter.
    #[cfg(feature = "rate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
    fn rate_limit_shared(
        self,
        limiter: impl std::borrow::Borrow<RateLimiter>,
    ) -> RateLimit<Self, RateLimiter>
    where
        Self: Sized,
    {
        crate::rate::rate_limit(self, limiter.borrow().clone())
    }

    /// Like [`rate_limit`](Self::rate_limit), charging each item `cost(&item)`
    /// permits (bytes, tokens, rows); a cost of 0 passes free. `limiter` is a
    /// [`Rate`] or a `&RateLimiter` to share.
    ///
    /// An item costing more than the burst could never pass. Rather than hang:
    /// the default (delay) policy panics naming both numbers;
    /// [`drop_over_quota`](RateLimit::drop_over_quota) drops and counts it;
    /// [`fail_over_quota`](RateLimit::fail_over_quota) yields it as
    /// [`RateLimitError::ExceedsBurst`](crate::rate::RateLimitError::ExceedsBurst).
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use tokio::time::Instant;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let sizes = futures::stream::iter([10_u32, 30, 20]);
    /// let at: Vec<u128> = sizes
    ///     .rate_limit_weighted(Rate::per_second(100).burst(30), |bytes| *bytes)
    ///     .map(|_| start.elapsed().as_millis())
    ///     .collect()
    ///     .await;
    /// // 10 of 30 at once; 30 must wait for 10 more (100 ms); 20 for 200 ms more.
    /// assert_eq!(at, [0, 100, 300]);
    /// # }
    /// ```
    #[cfg(feature = "rate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
    fn rate_limit_weighted<L, F>(self, limiter: L, cost: F) -> RateLimit<Self, Weighted<F>>
    where
        Self: Sized,
        L: Into<RateLimiter>,
        F: FnMut(&Self::Item) -> u32,
    {
        crate::rate::weighted(self, limiter.into(), cost)
    }

    /// Like [`rate_limit`](Self::rate_limit) with a quota per key: each item
    /// draws on the quota of `key(&item)` (a user, a host), independently of
    /// the other keys. `limiter` is a [`Rate`] or a `&KeyedRateLimiter` to
    /// share. Keys that go quiet are forgotten, so memory follows the keys
    /// seen recently (see [`KeyedRateLimiter`]). `key` is a
    /// [key function](crate#key-functions): `Fn(&T) -> K + Send + Sync +
    /// 'static`, as everywhere in the crate.
    ///
    /// Under the default (delay) policy order is kept, so an item waiting for
    /// its key holds back the items behind it; with
    /// [`drop_over_quota`](RateLimit::drop_over_quota) or
    /// [`fail_over_quota`](RateLimit::fail_over_quota) nothing waits.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let requests = futures::stream::iter(["ann", "ann", "bob", "ann", "bob"]);
    /// let passed: Vec<&str> = requests
    ///     .rate_limit_by(|user| *user, Rate::per_second(1))
    ///     .drop_over_quota()
    ///     .collect()
    ///     .await;
    /// assert_eq!(passed, ["ann", "bob"]);
    /// # }
    /// ```
    #[cfg(feature = "rate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate")))]
    fn rate_limit_by<K, F, L>(self, key: F, limiter: L) -> RateLimit<Self, Keyed<K, F>>
    where
        Self: Sized,
        K: Hash + Eq + Clone,
        F: Fn(&Self::Item) -> K + Send + Sync + 'static,
        L: Into<KeyedRateLimiter<K>>,
    {
        crate::rate::keyed(self, key, limiter.into())
    }

    // ----------------------------------------------------------------------
    // graceful shutdown

    /// Ends this stream when `shutdown` starts draining: a source that
    /// closes, so every operator downstream finishes what it holds and ends
    /// (Close, not Cancel). Put it right after the source: what it has let
    /// through is drained; what the source still holds is not taken. See
    /// [`Shutdown`](crate::shutdown::Shutdown).
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let ticks = futures::stream::iter(0..)
    ///     .rate_limit(Rate::every(Duration::from_secs(1)))
    ///     .close_on(&shutdown);
    /// let counted = shutdown.spawn("counter", ticks.count());
    /// tokio::time::sleep(Duration::from_millis(2500)).await;
    /// shutdown.trigger();
    /// assert_eq!(counted.await.unwrap(), 3, "ticks at 0, 1 and 2 s");
    /// # }
    /// ```
    fn close_on(self, shutdown: &crate::shutdown::Shutdown) -> crate::shutdown::CloseOn<Self>
    where
        Self: Sized,
    {
        crate::shutdown::close_on(self, shutdown)
    }

    // ----------------------------------------------------------------------
}

impl<S: Stream + ?Sized> ConcurrentStreamExt for S {}
