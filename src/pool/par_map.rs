//! [`ParMap`] and [`ParMapUnordered`]: a function applied to every item on a
//! pool of spawned workers.

use futures::Stream;
use pin_project_lite::pin_project;

use super::engine::Engine;
use super::operator::{engine_stream, shared_queue};

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

shared_queue!(ParMap<S, R>, R, "par_map", Input, None);
shared_queue!(ParMapUnordered<S, R>, R, "par_map_unordered", Completion, None);
engine_stream!(ParMap<S, R>, R);
engine_stream!(ParMapUnordered<S, R>, R);
