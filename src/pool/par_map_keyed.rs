//! [`ParMapKeyed`]: parallel across keys, in order within a key.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::Stream;

use super::engine::{Engine, Order, Plan, Route};
use super::hand_off::Lanes;
use super::stream::FromEngine;
use super::{Plain, PoolStream, Workers};

/// The stream returned by
/// [`par_map_keyed`](crate::ConcurrentStreamExt::par_map_keyed): items
/// with equal keys are handled one at a time, in input order, and their
/// results come out in that order; different keys run in parallel.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let events = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)];
/// let applied: tokio_conc::pool::ParMapKeyed<_, (&str, i32)> = futures::stream::iter(events)
///     .par_map_keyed(2, |(account, _)| *account, |event| async move { event });
/// let out: Vec<_> = applied.collect().await;
/// let a: Vec<_> = out.iter().filter(|(k, _)| *k == "a").map(|(_, n)| *n).collect();
/// assert_eq!(a, [1, 2, 3]);
/// # }
/// ```
pub type ParMapKeyed<S, R> = PoolStream<S, Plain<R>>;

const PAR_MAP_KEYED: Plan = Plan {
    operator: "par_map_keyed",
    order: Order::Completion,
    lanes: Lanes::PerWorker,
};

pub(crate) fn par_map_keyed<S, K, KF, F, Fut>(
    source: S,
    workers: impl Into<Workers>,
    key_fn: KF,
    f: F,
) -> ParMapKeyed<S, Fut::Output>
where
    S: Stream,
    S::Item: Send + 'static,
    K: Hash,
    KF: Fn(&S::Item) -> K + Send + Sync + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let workers = workers.into();
    let lanes = workers.count() as u64;
    let route = move |item: &S::Item| {
        let mut hasher = DefaultHasher::new();
        key_fn(item).hash(&mut hasher);
        // The remainder is below the worker count, which is a usize.
        (hasher.finish() % lanes) as usize
    };
    let route: Route<S::Item> = Box::new(route);
    PoolStream::from_engine(Engine::new(source, workers, f, PAR_MAP_KEYED, Some(route)))
}
