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

    /// Runs `f` on every item on `workers` spawned Tokio tasks and yields the
    /// results **in input order** — Go's worker pool, with real parallelism on
    /// a multi-thread runtime (unlike `buffer_unordered`).
    ///
    /// `workers` is a count or a [`Workers`](crate::pool::Workers) with a
    /// context, buffer and name. At most `workers` calls run at once; at most
    /// `workers + buffer` items are pulled ahead of the output, so a slow head
    /// item pauses intake. Ends when the input has ended and every result is
    /// yielded. See [`pool`](crate::pool) for cancellation, panics and what a
    /// stopped pool does with items it pulled.
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
        crate::pool::par_map(self, workers, f)
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
        crate::pool::par_map_unordered(self, workers, f)
    }

    /// Runs `f` on every item on `workers` spawned tasks; the future is done
    /// when every item has been handled and every worker has returned.
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
        crate::pool::par_for_each(self, workers, f)
    }

    /// [`par_map`](Self::par_map) for a fallible `f`, fail-fast like Go's
    /// errgroup: results come in input order; once an item fails, intake
    /// stops, queued items after it are dropped unstarted, the items before it
    /// finish and are yielded, then its `Err` is yielded and the stream ends.
    /// So the output is always the sequential `map`'s output up to and
    /// including its first `Err`.
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
    /// let out: Vec<Result<u32, String>> = futures::stream::iter(1..=6_u32)
    ///     .try_par_map(3, |x| async move {
    ///         if x == 4 { Err(format!("{x} is unlucky")) } else { Ok(x) }
    ///     })
    ///     .collect()
    ///     .await;
    /// assert_eq!(out, [Ok(1), Ok(2), Ok(3), Err("4 is unlucky".to_string())]);
    /// # }
    /// ```
    fn try_par_map<F, Fut, T, E>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParMap<Self, T, E>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        crate::pool::try_par_map(self, workers, f)
    }

    /// [`par_map_unordered`](Self::par_map_unordered) for a fallible `f`,
    /// fail-fast like Go's errgroup: on the first `Err` every item not yet
    /// started is dropped and the workers are cancelled; the successes that
    /// reached the consumer with it are yielded, then that `Err`, and the
    /// stream ends. Other items are dropped without a result (see
    /// [`pool`](crate::pool) for what that means for acknowledging sources).
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
    /// let out: Vec<Result<u32, u32>> = futures::stream::iter(1..=1000_u32)
    ///     .try_par_map_unordered(4, |x| async move { if x == 3 { Err(x) } else { Ok(x) } })
    ///     .collect()
    ///     .await;
    /// assert_eq!(out.last(), Some(&Err(3)));
    /// assert!(out.len() < 1000, "the rest was cancelled");
    /// # }
    /// ```
    fn try_par_map_unordered<F, Fut, T, E>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParMapUnordered<Self, T, E>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        crate::pool::try_par_map_unordered(self, workers, f)
    }

    /// [`par_for_each`](Self::par_for_each) for a fallible `f`: `Ok(())` if
    /// every item succeeded, else the first `Err`, after the other workers
    /// were cancelled and have returned (Go's errgroup `Wait`).
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
    /// let all_ok = futures::stream::iter(1..=5)
    ///     .try_par_for_each(2, |_| async { Ok::<(), String>(()) })
    ///     .await;
    /// assert_eq!(all_ok, Ok(()));
    /// # }
    /// ```
    fn try_par_for_each<F, Fut, E>(
        self,
        workers: impl Into<crate::pool::Workers>,
        f: F,
    ) -> crate::pool::TryParForEach<Self, E>
    where
        Self: Sized,
        Self::Item: Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        crate::pool::try_par_for_each(self, workers, f)
    }

    /// Runs `f` on `workers` spawned tasks, **in order within a key and in
    /// parallel across keys** (Akka's `mapAsyncPartitioned`): items whose
    /// `key_fn` keys are equal are handled one at a time, in input order, and
    /// their results are yielded in that order; results of different keys
    /// interleave as they finish.
    ///
    /// Keys are hashed onto the workers, so two keys that share a worker also
    /// take turns; a hot key can fill the `workers + buffer` window and pause
    /// intake, never grow memory.
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
        KF: Fn(&Self::Item) -> K + Send + 'static,
        F: Fn(Self::Item) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        crate::pool::par_map_keyed(self, workers, key_fn, f)
    }

    // ----------------------------------------------------------------------
    // fan-out

    // ----------------------------------------------------------------------
    // rate limiting

    // ----------------------------------------------------------------------
}

impl<S: Stream + ?Sized> ConcurrentStreamExt for S {}
