//! [`TryParMap`] and [`TryParMapUnordered`]: fail-fast pools (Go's errgroup)
//! over a stream of `Result`s, for functions that return `Result`.

use super::engine::{Order, Plan};
use super::{Fallible, PoolStream};

/// The stream returned by
/// [`try_par_map`](crate::ConcurrentStreamExt::try_par_map): `Ok` results
/// in input order, ending after the first `Err` (the input's or a call's), or
/// with the context's error when the pool's context stops it.
///
/// ```
/// use futures::{StreamExt, TryStreamExt};
/// use tokio_conc::prelude::*;
///
/// type Error = Box<dyn std::error::Error + Send + Sync>;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let parsed: tokio_conc::pool::TryParMap<_, u8> = futures::stream::iter(["1", "x", "3"])
///     .map(Ok::<_, Error>)
///     .try_par_map(2, |s| async move { Ok(s.parse::<u8>()?) });
/// let out: Vec<Result<u8, Error>> = parsed.collect().await;
/// assert_eq!(out.len(), 2);
/// assert_eq!(*out[0].as_ref().unwrap(), 1);
/// assert!(out[1].is_err(), "\"x\" is not a number");
/// # }
/// ```
pub type TryParMap<S, U> = PoolStream<S, Fallible<U>>;

/// The stream returned by
/// [`try_par_map_unordered`](crate::ConcurrentStreamExt::try_par_map_unordered):
/// `Ok` results as they finish, ending after the first `Err` (the input's or
/// a call's), or with the context's error when the pool's context stops it.
///
/// ```
/// use futures::{StreamExt, TryStreamExt};
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let checked: tokio_conc::pool::TryParMapUnordered<_, u32> = futures::stream::iter(1..=3_u32)
///     .map(Ok::<_, ContextError>)
///     .try_par_map_unordered(2, |x| async move { Ok(x * 10) });
/// let mut all: Vec<u32> = checked.try_collect().await.unwrap();
/// all.sort();
/// assert_eq!(all, [10, 20, 30]);
/// # }
/// ```
pub type TryParMapUnordered<S, U> = PoolStream<S, Fallible<U>>;

pub(crate) const TRY_PAR_MAP: Plan = Plan::shared("try_par_map", Order::Input);
pub(crate) const TRY_PAR_MAP_UNORDERED: Plan =
    Plan::shared("try_par_map_unordered", Order::Completion);
