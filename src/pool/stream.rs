//! [`PoolStream`]: the one stream type behind every pool stream operator, and
//! the one constructor that builds it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use pin_project_lite::pin_project;

use super::Workers;
use super::engine::{Engine, Plan};
use super::mapping::Mapping;
use crate::context::TaskContext;

pin_project! {
    /// The stream of a pool operator: [`par_map`](crate::ConcurrentStreamExt::par_map),
    /// [`par_map_unordered`](crate::ConcurrentStreamExt::par_map_unordered),
    /// [`par_map_keyed`](crate::ConcurrentStreamExt::par_map_keyed),
    /// [`try_par_map`](crate::ConcurrentStreamExt::try_par_map) and
    /// [`try_par_map_unordered`](crate::ConcurrentStreamExt::try_par_map_unordered)
    /// (each has an alias: [`ParMap`](super::ParMap) and so on). `M` is
    /// [`Plain`](super::Plain) or [`Fallible`](super::Fallible).
    ///
    /// It is a [`FusedStream`], and its [`size_hint`](Stream::size_hint) is
    /// honest: at most one result per input item (plus a `try_` pool's context
    /// error); a lower bound only where nothing can end the pool early.
    ///
    /// ```
    /// use futures::stream::FusedStream;
    /// use futures::{Stream, StreamExt};
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let mut squares = futures::stream::iter(1..=3_u64).par_map(2, |x| async move { x * x });
    /// assert_eq!(squares.size_hint(), (3, Some(3)));
    /// assert_eq!(squares.next().await, Some(1));
    /// assert_eq!(squares.by_ref().collect::<Vec<_>>().await, [4, 9]);
    /// assert!(squares.is_terminated());
    /// assert_eq!(squares.size_hint(), (0, Some(0)));
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct PoolStream<S: Stream, M: Mapping<S::Item>> {
        #[pin]
        engine: Engine<S, M>,
    }
}

impl<S, M> PoolStream<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    /// The context the pool is bound to: the one given with
    /// [`Workers::context`], else the one current where the operator was
    /// called ([`TaskContext::current`]), else none. Cancelling it stops the
    /// pool.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let inside = ctx
    ///     .scope(async { futures::stream::iter(0..3).par_map(2, |x| async move { x }) })
    ///     .await;
    /// assert!(inside.task_context().is_some(), "the ambient context");
    /// let outside = futures::stream::iter(0..3).par_map(2, |x| async move { x });
    /// assert!(outside.task_context().is_none());
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.engine.task_context()
    }
}

impl<S, M> Stream for PoolStream<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    type Item = M::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M::Output>> {
        self.project().engine.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.engine.size_hint()
    }
}

impl<S, M> FusedStream for PoolStream<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn is_terminated(&self) -> bool {
        self.engine.is_terminated()
    }
}

impl<S, M> std::fmt::Debug for PoolStream<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.engine.fmt(f)
    }
}

/// A pool operator's type: one [`Engine`] inside.
pub(crate) trait FromEngine<S: Stream, M: Mapping<S::Item>> {
    fn from_engine(engine: Engine<S, M>) -> Self;
}

impl<S, M> FromEngine<S, M> for PoolStream<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn from_engine(engine: Engine<S, M>) -> Self {
        PoolStream { engine }
    }
}

/// Builds any pool operator on a shared queue: its type (`PoolStream` or
/// `PoolFuture`) and its `Mapping` come from the caller's return type.
pub(crate) fn build<P, S, M, F, Fut>(source: S, workers: impl Into<Workers>, f: F, plan: Plan) -> P
where
    P: FromEngine<S, M>,
    S: Stream,
    M: Mapping<S::Item>,
    M::Arg: Send + 'static,
    M::Output: Send + 'static,
    F: Fn(M::Arg) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = M::Output> + Send + 'static,
{
    P::from_engine(Engine::new(source, workers.into(), f, plan, None))
}
