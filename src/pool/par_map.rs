//! [`ParMap`] and [`ParMapUnordered`]: a function applied to every item on a
//! pool of spawned workers.

use super::engine::{Order, Plan};
use super::{Plain, PoolStream};

/// The stream returned by
/// [`par_map`](crate::ConcurrentStreamExt::par_map): results in input order.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let squares: tokio_conc::pool::ParMap<_, u64> =
///     futures::stream::iter(1..=4_u64).par_map(2, |x| async move { x * x });
/// assert_eq!(squares.collect::<Vec<_>>().await, [1, 4, 9, 16]);
/// # }
/// ```
pub type ParMap<S, R> = PoolStream<S, Plain<R>>;

/// The stream returned by
/// [`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered):
/// results as they finish.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let doubled: tokio_conc::pool::ParMapUnordered<_, u64> =
///     futures::stream::iter(1..=4_u64).par_map_unordered(2, |x| async move { x * 2 });
/// let mut got = doubled.collect::<Vec<_>>().await;
/// got.sort();
/// assert_eq!(got, [2, 4, 6, 8]);
/// # }
/// ```
pub type ParMapUnordered<S, R> = PoolStream<S, Plain<R>>;

pub(crate) const PAR_MAP: Plan = Plan::shared("par_map", Order::Input);
pub(crate) const PAR_MAP_UNORDERED: Plan = Plan::shared("par_map_unordered", Order::Completion);
