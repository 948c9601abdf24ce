//! The lazy generator whose producer can fail: its `Err` is the last item.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;

use super::Yielder;
use super::lazy::{Lazy, Step};
use crate::context::TaskContext;

/// A lazy generator whose producer can fail: the stream [`try_generate`]
/// returns. Yields `Ok` items, then the producer's `Err` if it returned one,
/// then ends.
#[must_use = "streams do nothing unless polled"]
pub struct TryGenerate<T, E, Fut> {
    inner: Lazy<T, Fut>,
    error: PhantomData<fn() -> E>,
}

/// A lazy generator whose producer returns `Result<(), E>`: every sent item
/// comes out as `Ok`, and an `Err` the producer returns is the stream's last
/// item. Otherwise exactly like [`generate`](super::generate).
///
/// [`send`](Yielder::send) fails with [`Closed`](super::Closed); a producer can stop quietly
/// on it (`return Ok(())`), or use `?` if `E: From<Closed>` (true of
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error`). Once the consumer is
/// gone or the context is cancelled the stream has ended, so such an error
/// goes nowhere. The producer's output is `Result<(), E>` from the signature,
/// so an endless `loop` of sends needs no annotation beyond what names `E`.
///
/// The generator is bound to the context current where it is built, or to
/// one set with [`TryGenerate::context`] (the crate's
/// [context rule](crate#contexts-one-rule)).
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::generator::{try_generate, Yielder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lines = try_generate(|y: Yielder<u32>| async move {
///     for text in ["1", "2", "x", "4"] {
///         let n: u32 = text.parse().map_err(|_| format!("bad number {text:?}"))?;
///         if y.send(n).await.is_err() {
///             return Ok(());
///         }
///     }
///     Ok(())
/// });
/// let all: Vec<Result<u32, String>> = lines.collect().await;
/// assert_eq!(all, [Ok(1), Ok(2), Err("bad number \"x\"".to_string())]);
///
/// // Endless, with `?` on every send: the error type names `E`.
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// let ticks = try_generate(|y| async move {
///     let mut i = 0_u32;
///     loop {
///         y.send(i).await?;
///         i += 1;
///     }
/// });
/// let first: Vec<Result<u32, BoxError>> = ticks.take(2).collect().await;
/// assert_eq!(first.len(), 2);
/// # }
/// ```
pub fn try_generate<T, E, F, Fut>(producer: F) -> TryGenerate<T, E, Fut>
where
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    TryGenerate {
        inner: Lazy::new(producer),
        error: PhantomData,
    }
}

impl<T, E, Fut: Future> TryGenerate<T, E, Fut> {
    /// Binds the generator to `ctx`, as [`Generate::context`](super::Generate::context) does,
    /// replacing the context inherited where it was built (the crate's
    /// [context rule](crate#contexts-one-rule)). After a cancellation the
    /// stream ends without an `Err` item: ask `ctx.err()` why.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Yielder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// ctx.cancel();
    /// let s = try_generate(|y: Yielder<u8>| async move {
    ///     y.send(1).await.map_err(|closed| closed.to_string())
    /// })
    /// .context(&ctx);
    /// assert_eq!(s.count().await, 0);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.inner.attach(ctx);
        self
    }

    /// The context the generator is bound to: the one set with
    /// [`context`](Self::context), else the one current where it was built.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Closed;
    ///
    /// let g = try_generate(|y| async move { y.send(1).await.map_err(|_: Closed| "closed") });
    /// assert!(g.task_context().is_none());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.inner.task_context()
    }
}

impl<T, E, Fut> Stream for TryGenerate<T, E, Fut>
where
    Fut: Future<Output = Result<(), E>>,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(self.inner.poll_step(cx)) {
            Some(Step::Item(item)) => Poll::Ready(Some(Ok(item))),
            Some(Step::Returned(Err(error))) => Poll::Ready(Some(Err(error))),
            Some(Step::Returned(Ok(())) | Step::Cancelled) | None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T, E, Fut> FusedStream for TryGenerate<T, E, Fut>
where
    Fut: Future<Output = Result<(), E>>,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_done()
    }
}

impl<T, E, Fut> fmt::Debug for TryGenerate<T, E, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryGenerate")
            .field("done", &self.inner.is_done())
            .finish_non_exhaustive()
    }
}
