//! [`CloseOn`]: a stream that ends when its shutdown starts draining — the
//! "Close" of a source, so that every operator downstream drains.
//!
//! Invariants: the drain is checked before every poll of the inner stream
//! (one atomic load), and the drain's future is polled — registering the
//! consumer's waker — whenever the inner stream is pending, so a trigger while
//! the consumer waits is never missed. Once ended, the inner stream is never
//! polled again.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use pin_project_lite::pin_project;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::Shutdown;
use super::state::State;

pin_project! {
    /// A stream that ends when its [`Shutdown`] starts draining: what
    /// [`close_on`](crate::ConcurrentStreamExt::close_on) returns.
    ///
    /// Until the trigger it yields the inner stream's items; from the trigger
    /// on it yields nothing more and ends (or ends earlier, with the inner
    /// stream). An item the inner stream had ready is not lost: it stays in
    /// the inner stream, which is not polled again.
    #[must_use = "streams do nothing unless polled"]
    pub struct CloseOn<S> {
        #[pin]
        stream: S,
        // Boxed (so the stream is `Unpin` when `S` is), and made only once
        // the inner stream first waits.
        drained: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        state: Arc<State>,
        done: bool,
    }
}

pub(crate) fn close_on<S: Stream>(stream: S, shutdown: &Shutdown) -> CloseOn<S> {
    CloseOn {
        stream,
        drained: None,
        state: Arc::clone(&shutdown.state),
        done: false,
    }
}

impl<S> CloseOn<S> {
    /// The inner stream.
    ///
    /// ```
    /// use futures::Stream;
    /// use tokio_conc::prelude::*;
    ///
    /// let shutdown = Shutdown::new();
    /// let s = futures::stream::iter(0..3).close_on(&shutdown);
    /// assert_eq!(s.get_ref().size_hint(), (3, Some(3)));
    /// assert_eq!(s.size_hint(), (0, Some(3)), "it may close at any moment");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, unwrapped (whatever it still holds included).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::new();
    /// let mut s = futures::stream::iter(0..3).close_on(&shutdown);
    /// assert_eq!(s.next().await, Some(0));
    /// shutdown.trigger();
    /// assert_eq!(s.next().await, None, "closed by the drain");
    /// assert_eq!(s.into_inner().collect::<Vec<_>>().await, [1, 2], "left in the source");
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Stream> Stream for CloseOn<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if this.state.is_draining() {
            *this.done = true;
            return Poll::Ready(None);
        }
        match this.stream.poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this
                .drained
                .get_or_insert_with(|| Box::pin(this.state.drain.clone().cancelled_owned()))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    *this.done = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // It may close at any moment.
        (0, self.stream.size_hint().1)
    }
}

impl<S: Stream> FusedStream for CloseOn<S> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<S: fmt::Debug> fmt::Debug for CloseOn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseOn")
            .field("stream", &self.stream)
            .field("draining", &self.state.is_draining())
            .field("done", &self.done)
            .finish()
    }
}
