//! [`ParMap`] and [`ParMapUnordered`]: a function applied to every item on a
//! pool of spawned workers.

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
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct ParMap<S: Stream, R> {
        #[pin]
        engine: Engine<S, R>,
    }
}

pin_project! {
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
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct ParMapUnordered<S: Stream, R> {
        #[pin]
        engine: Engine<S, R>,
    }
}

pub(crate) fn par_map<S, F, Fut>(
    source: S,
    workers: impl Into<Workers>,
    f: F,
) -> ParMap<S, Fut::Output>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let plan = Plan {
        operator: "par_map",
        order: Order::Input,
        lanes: Lanes::Shared,
        route: None,
    };
    ParMap {
        engine: Engine::new(source, workers.into(), f, plan, None),
    }
}

pub(crate) fn par_map_unordered<S, F, Fut>(
    source: S,
    workers: impl Into<Workers>,
    f: F,
) -> ParMapUnordered<S, Fut::Output>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let plan = Plan {
        operator: "par_map_unordered",
        order: Order::Completion,
        lanes: Lanes::Shared,
        route: None,
    };
    ParMapUnordered {
        engine: Engine::new(source, workers.into(), f, plan, None),
    }
}

impl<S, R> Stream for ParMap<S, R>
where
    S: Stream,
    S::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = R;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
        self.project().engine.poll_next(cx)
    }
}

impl<S, R> Stream for ParMapUnordered<S, R>
where
    S: Stream,
    S::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = R;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
        self.project().engine.poll_next(cx)
    }
}
