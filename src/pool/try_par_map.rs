//! [`TryParMap`] and [`TryParMapUnordered`]: fail-fast pools (Go's errgroup)
//! for functions that return `Result`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use super::Workers;
use super::engine::{Engine, Order, Plan};
use super::hand_off::Lanes;

pin_project! {
    /// The stream returned by
    /// [`try_par_map`](crate::ConcurrentStreamExt::try_par_map): results in
    /// input order, ending after the first `Err`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let parsed: tokio_conc::pool::TryParMap<_, u8, String> = futures::stream::iter(["1", "x", "3"])
    ///     .try_par_map(2, |s| async move { s.parse::<u8>().map_err(|_| format!("bad {s}")) });
    /// assert_eq!(parsed.collect::<Vec<_>>().await, [Ok(1), Err("bad x".to_string())]);
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TryParMap<S: Stream, T, E> {
        #[pin]
        engine: Engine<S, Result<T, E>>,
    }
}

pin_project! {
    /// The stream returned by
    /// [`try_par_map_unordered`](crate::ConcurrentStreamExt::try_par_map_unordered):
    /// results as they finish, ending after the first `Err`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let checked: tokio_conc::pool::TryParMapUnordered<_, u32, &str> = futures::stream::iter(1..=3_u32)
    ///     .try_par_map_unordered(2, |x| async move { Ok(x) });
    /// assert_eq!(checked.collect::<Vec<_>>().await.len(), 3);
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TryParMapUnordered<S: Stream, T, E> {
        #[pin]
        engine: Engine<S, Result<T, E>>,
    }
}

pub(crate) fn try_par_map<S, F, Fut, T, E>(
    source: S,
    workers: impl Into<Workers>,
    f: F,
) -> TryParMap<S, T, E>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let plan = Plan {
        operator: "try_par_map",
        order: Order::Input,
        lanes: Lanes::Shared,
        route: None,
    };
    TryParMap {
        engine: Engine::new(source, workers.into(), f, plan, Some(Result::is_err)),
    }
}

pub(crate) fn try_par_map_unordered<S, F, Fut, T, E>(
    source: S,
    workers: impl Into<Workers>,
    f: F,
) -> TryParMapUnordered<S, T, E>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let plan = Plan {
        operator: "try_par_map_unordered",
        order: Order::Completion,
        lanes: Lanes::Shared,
        route: None,
    };
    TryParMapUnordered {
        engine: Engine::new(source, workers.into(), f, plan, Some(Result::is_err)),
    }
}

impl<S, T, E> Stream for TryParMap<S, T, E>
where
    S: Stream,
    S::Item: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().engine.poll_next(cx)
    }
}

impl<S, T, E> Stream for TryParMapUnordered<S, T, E>
where
    S: Stream,
    S::Item: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().engine.poll_next(cx)
    }
}
