//! [`ConcurrentStreamExt`]: the operators, as methods on every `Stream`.
//!
//! A thin façade: each method documents the operator and delegates, in one
//! line, to the module that implements it.

use futures::Stream;

/// Concurrency operators for every [`Stream`]: `use tokio_conc::prelude::*;`
/// brings them in.
pub trait ConcurrentStreamExt: Stream {
    // ----------------------------------------------------------------------
    // generator

    /// Drives this stream on a task of its own, up to `buffer` items ahead of
    /// the consumer (Go's buffered channel between two goroutines): slow
    /// production overlaps with slow consumption.
    ///
    /// The task pulls an item only when the buffer has room, so at most
    /// `buffer` items are taken from `self` before the consumer asks for them.
    /// Dropping the returned stream stops the task and drops `self`. A panic
    /// in `self` is resumed in the consumer.
    ///
    /// # Panics
    ///
    /// If `buffer` is 0, or when called outside a Tokio runtime.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let squares = futures::stream::iter(1..=5_u32).map(|n| n * n).prefetch(2);
    /// assert_eq!(squares.collect::<Vec<_>>().await, [1, 4, 9, 16, 25]);
    /// # }
    /// ```
    fn prefetch(self, buffer: usize) -> crate::generator::Prefetch<Self::Item>
    where
        Self: Sized + Send + 'static,
        Self::Item: Send + 'static,
    {
        crate::generator::prefetch(self, buffer)
    }

    // ----------------------------------------------------------------------
    // worker pools

    // ----------------------------------------------------------------------
    // fan-out

    // ----------------------------------------------------------------------
    // rate limiting

    // ----------------------------------------------------------------------
}

impl<S: Stream + ?Sized> ConcurrentStreamExt for S {}
