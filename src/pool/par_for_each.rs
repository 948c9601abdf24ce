//! [`ParForEach`] and [`TryParForEach`]: run a function on every item on a
//! pool of spawned workers, as a future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use pin_project_lite::pin_project;

use super::Workers;
use super::engine::{Engine, Order, Plan};
use super::hand_off::Lanes;

pin_project! {
    /// The future returned by
    /// [`par_for_each`](crate::ConcurrentStreamExt::par_for_each): done when
    /// every item has been handled.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let total = Arc::new(AtomicU64::new(0));
    /// let sum = total.clone();
    /// let all: tokio_conc::pool::ParForEach<_> = futures::stream::iter(1..=10_u64)
    ///     .par_for_each(3, move |x| {
    ///         let sum = sum.clone();
    ///         async move { sum.fetch_add(x, Ordering::Relaxed); }
    ///     });
    /// all.await;
    /// assert_eq!(total.load(Ordering::Relaxed), 55);
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct ParForEach<S: Stream> {
        #[pin]
        engine: Engine<S, ()>,
    }
}

pin_project! {
    /// The future returned by
    /// [`try_par_for_each`](crate::ConcurrentStreamExt::try_par_for_each):
    /// `Ok(())` when every item succeeded, or the first `Err`.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let run: tokio_conc::pool::TryParForEach<_, String> = futures::stream::iter(1..=10_u32)
    ///     .try_par_for_each(3, |x| async move {
    ///         if x == 7 { Err(format!("item {x} failed")) } else { Ok(()) }
    ///     });
    /// assert_eq!(run.await, Err("item 7 failed".to_string()));
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct TryParForEach<S: Stream, E> {
        #[pin]
        engine: Engine<S, Result<(), E>>,
        // Held until the workers have returned, so none outlives the result.
        failure: Option<E>,
    }
}

pub(crate) fn par_for_each<S, F, Fut>(source: S, workers: impl Into<Workers>, f: F) -> ParForEach<S>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let plan = Plan {
        operator: "par_for_each",
        order: Order::Completion,
        lanes: Lanes::Shared,
        route: None,
    };
    ParForEach {
        engine: Engine::new(source, workers.into(), f, plan, None),
    }
}

pub(crate) fn try_par_for_each<S, F, Fut, E>(
    source: S,
    workers: impl Into<Workers>,
    f: F,
) -> TryParForEach<S, E>
where
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let plan = Plan {
        operator: "try_par_for_each",
        order: Order::Completion,
        lanes: Lanes::Shared,
        route: None,
    };
    TryParForEach {
        engine: Engine::new(source, workers.into(), f, plan, Some(Result::is_err)),
        failure: None,
    }
}

impl<S> Future for ParForEach<S>
where
    S: Stream,
    S::Item: Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut engine = self.project().engine;
        while ready!(engine.as_mut().poll_next(cx)).is_some() {}
        Poll::Ready(())
    }
}

impl<S, E> Future for TryParForEach<S, E>
where
    S: Stream,
    S::Item: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        while let Some(done) = ready!(this.engine.as_mut().poll_next(cx)) {
            if let Err(e) = done {
                *this.failure = Some(e);
            }
        }
        Poll::Ready(this.failure.take().map_or(Ok(()), Err))
    }
}
