//! Generators: a producer written as plain async code, consumed as a `Stream`
//! — Go's "function that returns a channel and fills it from a goroutine".
//!
//! The producer gets a [`Yielder`] and calls [`send`](Yielder::send) for every
//! item. Three ways to run it, mirroring Go's channel kinds:
//!
//! | Go | tokio-conc | the producer runs |
//! |---|---|---|
//! | unbuffered channel | [`generate`], [`try_generate`] | inside the consumer's `poll_next`, one item at a time: no task, no buffer |
//! | buffered channel of `n` | [`generate_ahead(n, f)`](generate_ahead) | on its own task, up to `n` items ahead |
//! | a goroutine copying a channel into a buffered one | [`s.prefetch(n)`](crate::ConcurrentStreamExt::prefetch) | any stream, driven by its own task, up to `n` items ahead |
//!
//! # The producer's return type
//!
//! A producer for [`generate`] and [`generate_ahead`] returns
//! `Result<(), Closed>`: it writes `y.send(v).await?`, which stops it as soon
//! as nobody listens any more, and needs no type annotation — an endless
//! `loop { y.send(v).await?; }` and a `for` loop ending in `Ok(())` both
//! infer. A producer for [`try_generate`] returns `Result<(), E>`: an `Err`
//! becomes the stream's last item.
//!
//! # Stopping: Go's `done` channel, for free
//!
//! * The consumer **drops the stream**: a lazy producer is simply dropped (it
//!   only ever ran inside the consumer); a producer on its own task that is
//!   waiting in [`send`](Yielder::send) gets [`Err(Closed)`](Closed), gets to
//!   run up to its next `.await`, and its task then ends — it never outlives
//!   the stream.
//! * The [`TaskContext`](crate::TaskContext) the generator is bound to is
//!   cancelled: `send` fails with a [`Closed`] carrying the context's error and
//!   the stream ends at once. That is the context given with `.context(&ctx)`,
//!   else the one current where the generator was built (the crate's
//!   [context rule](crate#contexts-one-rule)).
//! * The producer returns: the stream ends after the items already sent.
//!
//! ```
//! use futures::StreamExt;
//! use tokio_conc::generator::generate;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let squares = generate(|y| async move {
//!     for i in 1_u64.. {
//!         y.send(i * i).await?;
//!     }
//!     Ok(())
//! });
//! let first: Vec<u64> = squares.take(4).collect().await;
//! assert_eq!(first, [1, 4, 9, 16]);
//! # }
//! ```

mod ahead;
mod buffer;
mod lazy;
mod prefetch;
mod rendezvous;
mod try_generate;

use std::error::Error;
use std::fmt;

use crate::context::ContextError;

pub use ahead::{GenerateAhead, generate_ahead};
pub use lazy::{Generate, generate};
pub use prefetch::Prefetch;
pub(crate) use prefetch::prefetch;
pub use try_generate::{TryGenerate, try_generate};

/// The error [`Yielder::send`] returns once the generator takes no more items:
/// the consumer dropped the stream, the producer has already returned, or the
/// attached [`TaskContext`](crate::TaskContext) was cancelled
/// ([`context_error`](Closed::context_error) says which).
///
/// ```
/// use tokio_conc::generator::Closed;
///
/// let closed = Closed::default();
/// assert!(closed.context_error().is_none());
/// assert_eq!(closed.to_string(), "generator closed: nobody takes its items any more");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    cancelled: Option<ContextError>,
}

impl Closed {
    pub(crate) fn cancelled(reason: ContextError) -> Self {
        Closed {
            cancelled: Some(reason),
        }
    }

    /// Why the attached context stopped the generator, if that is what closed it.
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
    /// let canceller = ctx.clone();
    /// let mut numbers = generate(move |y: Yielder<u32>| async move {
    ///     y.send(1).await?;
    ///     canceller.cancel();
    ///     let _ = tx.send(y.send(2).await);
    ///     Ok(())
    /// })
    /// .context(&ctx);
    /// assert_eq!(numbers.next().await, Some(1));
    /// assert_eq!(numbers.next().await, None);
    /// let err = rx.await.unwrap().unwrap_err();
    /// assert_eq!(err.context_error(), Some(&ContextError::Cancelled));
    /// # }
    /// ```
    pub fn context_error(&self) -> Option<&ContextError> {
        self.cancelled.as_ref()
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cancelled {
            None => f.write_str("generator closed: nobody takes its items any more"),
            Some(reason) => write!(f, "generator closed: {reason}"),
        }
    }
}

impl Error for Closed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cancelled.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The producer's handle: [`send`](Yielder::send) hands the consumer one item.
///
/// A generator gets exactly one `Yielder`. It is `Send`, so the producer may
/// move it into a task of its own; the stream still ends when the producer
/// future returns.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::generator::{generate, Yielder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let words = generate(|y: Yielder<String>| async move {
///     for w in ["go", "rust"] {
///         y.send(w.to_uppercase()).await?;
///     }
///     Ok(())
/// });
/// assert_eq!(words.collect::<Vec<_>>().await, ["GO", "RUST"]);
/// # }
/// ```
pub struct Yielder<T> {
    sink: Sink<T>,
}

enum Sink<T> {
    Lazy(std::sync::Arc<rendezvous::Rendezvous<T>>),
    Channel(ahead::ChannelSink<T>),
}

impl<T> Yielder<T> {
    /// Hands `value` to the consumer and waits until it is taken (a lazy
    /// generator) or buffered (a generator running ahead).
    ///
    /// # Errors
    ///
    /// [`Closed`] when the generator takes no more items: the consumer dropped
    /// the stream, or the attached context was cancelled. `value` is dropped.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes takes `value` back: the consumer
    /// never sees it.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::generator::{generate_ahead, Yielder};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let mut s = generate_ahead(1, |y: Yielder<u8>| async move {
    ///     y.send(1).await?; // buffered
    ///     let _ = tx.send(y.send(2).await); // waits: the buffer is full
    ///     Ok(())
    /// });
    /// assert_eq!(s.next().await, Some(1));
    /// drop(s);
    /// assert!(rx.await.unwrap().is_err(), "the consumer left: Err(Closed)");
    /// # }
    /// ```
    pub async fn send(&self, value: T) -> Result<(), Closed> {
        match &self.sink {
            Sink::Lazy(slot) => match rendezvous::Offer::new(slot, value).await {
                Err(reason) => closed(reason).await,
                Ok(()) => Ok(()),
            },
            Sink::Channel(channel) => channel.send(value).await,
        }
    }

    /// Whether [`send`](Self::send) would fail at once: the consumer is gone,
    /// the producer already returned, or the attached context was cancelled.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::generator::{generate, Yielder};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = generate(|y: Yielder<u8>| async move {
    ///     assert!(!y.is_closed());
    ///     Ok(())
    /// });
    /// assert_eq!(s.count().await, 0);
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        match &self.sink {
            Sink::Lazy(slot) => slot.is_closed(),
            Sink::Channel(channel) => channel.is_closed(),
        }
    }
}

impl<T> fmt::Debug for Yielder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.sink {
            Sink::Lazy(_) => "lazy",
            Sink::Channel(_) => "ahead",
        };
        f.debug_struct("Yielder")
            .field("mode", &mode)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A cooperative pause before reporting [`Closed`]: a producer that ignores
/// the error and keeps sending still yields to the scheduler now and then, so
/// it can be stopped instead of spinning.
async fn closed(reason: Closed) -> Result<(), Closed> {
    tokio::task::coop::consume_budget().await;
    Err(reason)
}
