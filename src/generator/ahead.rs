//! [`generate_ahead`]: a generator whose producer runs ahead of the consumer
//! on its own task, feeding a bounded buffer (Go's buffered channel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::buffer::Buffer;
use super::{Closed, ProducerOutput, Sink, Yielder, closed};
use crate::context::{ContextError, TaskContext};
use crate::internal::runtime_handle;

/// The context a running generator may be bound to after it started: the
/// producer's task and its sends wait on it.
struct Link {
    ctx: OnceLock<TaskContext>,
    attached: Notify,
}

impl Link {
    fn err(&self) -> Option<ContextError> {
        self.ctx.get().and_then(TaskContext::err)
    }

    /// Completes when a context is attached and cancelled.
    async fn cancelled(&self) -> ContextError {
        loop {
            // Made before the check, so an attach in between still wakes us.
            let attached = self.attached.notified();
            if let Some(ctx) = self.ctx.get() {
                ctx.cancelled().await;
                return ctx.err().unwrap_or(ContextError::Cancelled);
            }
            attached.await;
        }
    }
}

pub(super) struct ChannelSink<T> {
    tx: mpsc::Sender<T>,
    link: Arc<Link>,
}

impl<T> ChannelSink<T> {
    pub(super) async fn send(&self, value: T) -> Result<(), Closed> {
        let Some(ctx) = self.link.ctx.get() else {
            return match self.tx.send(value).await {
                Ok(()) => Ok(()),
                Err(_) => closed(Closed::default()).await,
            };
        };
        if let Some(reason) = ctx.err() {
            return closed(Closed::cancelled(reason)).await;
        }
        // Room in the buffer: no need to wait on the context as well.
        let value = match self.tx.try_send(value) {
            Ok(()) => {
                tokio::task::coop::consume_budget().await;
                return Ok(());
            }
            Err(TrySendError::Closed(_)) => return closed(Closed::default()).await,
            Err(TrySendError::Full(value)) => value,
        };
        tokio::select! {
            biased;
            () = ctx.cancelled() => {
                let reason = ctx.err().unwrap_or(ContextError::Cancelled);
                closed(Closed::cancelled(reason)).await
            }
            sent = self.tx.send(value) => match sent {
                Ok(()) => Ok(()),
                Err(_) => closed(Closed::default()).await,
            },
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.link.err().is_some()
    }
}

/// A generator running ahead on its own task: the stream [`generate_ahead`]
/// returns.
///
/// Dropping it closes the buffer: a producer waiting in
/// [`send`](Yielder::send) gets [`Err(Closed)`](Closed) and runs up to its
/// next `.await`, where its task ends — it does not outlive the stream.
#[must_use = "the producer runs ahead, but its items are lost unless polled"]
pub struct GenerateAhead<T> {
    buffer: Buffer<T>,
    link: Arc<Link>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

/// A generator whose producer runs on its own task, up to `buffer` items
/// ahead of the consumer (Go's generator on a buffered channel).
///
/// The task starts at once. [`send`](Yielder::send) completes as soon as the
/// item is in the buffer and waits while the buffer is full, so at most
/// `buffer` items wait for the consumer, plus — as in Go — the one the
/// producer holds in a waiting `send`. The stream ends when the producer
/// returns and the buffer is drained. A panic in the producer is resumed in
/// the consumer. Attach a [`TaskContext`] with [`GenerateAhead::context`].
///
/// # Panics
///
/// If `buffer` is 0, or when called outside a Tokio runtime.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
/// use tokio_conc::generator::{Closed, Yielder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pages = generate_ahead(4, |y: Yielder<String>| async move {
///     for n in 1..=3 {
///         y.send(format!("page {n}")).await?; // fetched while the consumer works
///     }
///     Ok::<(), Closed>(())
/// });
/// assert_eq!(pages.collect::<Vec<_>>().await, ["page 1", "page 2", "page 3"]);
/// # }
/// ```
///
/// ```should_panic
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // panics: generate_ahead: `buffer` must be at least 1, got 0
/// let _ = tokio_conc::generator::generate_ahead(0, |y: tokio_conc::generator::Yielder<u8>| async move {
///     let _ = y.send(1).await;
/// });
/// # }
/// ```
pub fn generate_ahead<T, F, Fut>(buffer: usize, producer: F) -> GenerateAhead<T>
where
    T: Send + 'static,
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: ProducerOutput,
{
    assert!(
        buffer > 0,
        "generate_ahead: `buffer` must be at least 1, got 0"
    );
    let runtime = runtime_handle("generate_ahead");
    let (tx, rx) = mpsc::channel(buffer);
    let link = Arc::new(Link {
        ctx: OnceLock::new(),
        attached: Notify::new(),
    });
    let consumer_gone = tx.clone();
    let producer = producer(Yielder {
        sink: Sink::Channel(ChannelSink {
            tx,
            link: Arc::clone(&link),
        }),
    });
    let task_link = Arc::clone(&link);
    let task = runtime.spawn(async move {
        // The producer is polled first, so one waiting in `send` sees
        // `Closed` and finishes what it can before the other arms drop it.
        tokio::select! {
            biased;
            _ = producer => {}
            () = consumer_gone.closed() => {}
            _ = task_link.cancelled() => {}
        }
    });
    GenerateAhead {
        buffer: Buffer::new(rx, task),
        link,
        cancelled: None,
    }
}

impl<T> GenerateAhead<T> {
    /// Binds the running generator to `ctx`: once `ctx` is cancelled (or its
    /// deadline passes), [`send`](Yielder::send) fails with a [`Closed`]
    /// carrying the context's error, the producer's task ends, and the stream
    /// ends at once, dropping what is still buffered. Attach it right after
    /// [`generate_ahead`]: it binds sends from then on. Only the first
    /// context attached counts.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Yielder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let mut s = generate_ahead(2, |y: Yielder<u32>| async move {
    ///     let mut n = 0;
    ///     let stop = loop {
    ///         if let Err(closed) = y.send(n).await {
    ///             break closed;
    ///         }
    ///         n += 1;
    ///     };
    ///     let _ = tx.send(stop);
    /// })
    /// .context(&ctx);
    /// assert_eq!(s.next().await, Some(0));
    /// ctx.cancel();
    /// assert_eq!(s.next().await, None);
    /// let stop = rx.await.unwrap();
    /// assert_eq!(stop.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        if self.link.ctx.set(ctx.clone()).is_ok() {
            self.link.attached.notify_waiters();
            self.cancelled = Some(Box::pin(ctx.token().cancelled_owned()));
        }
        self
    }

    /// How many items wait in the buffer.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::generator::Yielder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = generate_ahead(8, |y: Yielder<u8>| async move {
    ///     for i in 0..3 {
    ///         let _ = y.send(i).await;
    ///     }
    /// });
    /// tokio::task::yield_now().await; // let the producer run
    /// assert_eq!(s.buffered_len(), 3);
    /// # }
    /// ```
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }
}

impl<T> Stream for GenerateAhead<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        if let Some(cancelled) = &mut this.cancelled {
            if cancelled.as_mut().poll(cx).is_ready() {
                this.cancelled = None;
                this.buffer.stop();
                return Poll::Ready(None);
            }
        }
        this.buffer.poll_next(cx)
    }
}

impl<T> FusedStream for GenerateAhead<T> {
    fn is_terminated(&self) -> bool {
        self.buffer.is_done()
    }
}

impl<T> fmt::Debug for GenerateAhead<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateAhead")
            .field("buffered", &self.buffered_len())
            .field("done", &self.buffer.is_done())
            .finish_non_exhaustive()
    }
}
