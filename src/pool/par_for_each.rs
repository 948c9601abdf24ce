//! [`PoolFuture`] ([`ParForEach`], [`TryParForEach`]): run a function on
//! every item on a pool of spawned workers, as a future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::future::FusedFuture;
use pin_project_lite::pin_project;

use super::engine::{Engine, Order, Plan};
use super::mapping::Mapping;
use super::stream::FromEngine;
use super::{Fallible, Plain};
use crate::context::{ContextError, TaskContext};

pin_project! {
    /// The future of [`par_for_each`](crate::ConcurrentStreamExt::par_for_each)
    /// ([`ParForEach`]) and
    /// [`try_par_for_each`](crate::ConcurrentStreamExt::try_par_for_each)
    /// ([`TryParForEach`]): done when every item has been handled (or the
    /// first `Err`, or the context's error, ended the run) and every worker
    /// has returned.
    ///
    /// ```
    /// use futures::future::FusedFuture;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let mut run = futures::stream::iter(0..4).par_for_each(2, |_| async {});
    /// assert!(!run.is_terminated());
    /// (&mut run).await;
    /// assert!(run.is_terminated());
    /// # }
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct PoolFuture<S: Stream, M: Mapping<S::Item>> {
        #[pin]
        engine: Engine<S, M>,
    }
}

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
pub type ParForEach<S> = PoolFuture<S, Plain<()>>;

/// The future returned by
/// [`try_par_for_each`](crate::ConcurrentStreamExt::try_par_for_each):
/// `Ok(())` when every item succeeded, else the first `Err` (the input's or a
/// call's), or the context's error when the pool's context stopped the run.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let run: tokio_conc::pool::TryParForEach<_> = futures::stream::iter(1..=10_u32)
///     .map(Ok)
///     .try_par_for_each(3, |x| async move {
///         if x == 7 { Err(ContextError::Cancelled) } else { Ok(()) }
///     });
/// assert_eq!(run.await, Err(ContextError::Cancelled));
/// # }
/// ```
pub type TryParForEach<S> = PoolFuture<S, Fallible<()>>;

pub(crate) const PAR_FOR_EACH: Plan = Plan::shared("par_for_each", Order::Completion);
pub(crate) const TRY_PAR_FOR_EACH: Plan = Plan::shared("try_par_for_each", Order::Completion);

impl<S, M> FromEngine<S, M> for PoolFuture<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn from_engine(engine: Engine<S, M>) -> Self {
        PoolFuture { engine }
    }
}

impl<S, M> PoolFuture<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    /// The context the pool is bound to, as
    /// [`PoolStream::task_context`](super::PoolStream::task_context) says.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let run = futures::stream::iter(0..3).par_for_each(Workers::new(2).context(&ctx), |_| async {});
    /// assert!(run.task_context().is_some());
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.engine.task_context()
    }
}

impl<S> Future for PoolFuture<S, Plain<()>>
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

impl<S, T, E> Future for PoolFuture<S, Fallible<()>>
where
    S: Stream<Item = Result<T, E>>,
    T: Send + 'static,
    E: From<ContextError> + Send + 'static,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut engine = self.project().engine;
        while let Some(done) = ready!(engine.as_mut().poll_next(cx)) {
            if let Err(e) = done {
                // A failure is the pool's last item, yielded once its workers
                // have returned: this poll ends the engine.
                let end = engine.as_mut().poll_next(cx);
                debug_assert!(matches!(end, Poll::Ready(None)));
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S, M> FusedFuture for PoolFuture<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
    Self: Future,
{
    fn is_terminated(&self) -> bool {
        self.engine.is_terminated()
    }
}

impl<S, M> std::fmt::Debug for PoolFuture<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.engine.fmt(f)
    }
}
