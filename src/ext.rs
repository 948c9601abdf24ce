//! [`ConcurrentStreamExt`]: the operators, as methods on every `Stream`.
//!
//! A thin façade: each method documents the operator and delegates, in one
//! line, to the module that implements it.

use futures::Stream;

/// Concurrency operators for every [`Stream`]: `use tokio_conc::prelude::*;`
/// brings them in.
pub trait ConcurrentStreamExt: Stream {
    // ----------------------------------------------------------------------
    // generator

    // ----------------------------------------------------------------------
    // worker pools

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
        F: FnMut(&Self::Item) -> K + Send + 'static,
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
        F: FnMut(&Self::Item) -> K + Send + 'static,
    {
        crate::fan_out::partition_with(self, n, capacity, key_fn)
    }

    // ----------------------------------------------------------------------
    // rate limiting

    // ----------------------------------------------------------------------
}

impl<S: Stream + ?Sized> ConcurrentStreamExt for S {}
