//! [`TryParMap`] and [`TryParMapUnordered`]: fail-fast pools (Go's errgroup)
//! for functions that return `Result`.

use futures::Stream;
use pin_project_lite::pin_project;

use super::engine::Engine;
use super::operator::{engine_stream, shared_queue};

pin_project! {
    /// The stream returned by
    /// [`try_par_map`](crate::ConcurrentStreamExt::try_par_map): results in
    /// input order, ending after the first `Err`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let parsed: tokio_conc::pool::TryParMap<_, u8, String> = futures::stream::iter(["1", "x", "3"])
    ///     .try_par_map(2, |s| async move { s.parse::<u8>().map_err(|_| format!("bad {s}")) });
    /// assert_eq!(parsed.collect::<Vec<_>>().await, [Ok(1), Err("bad x".to_string())]);
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TryParMap<S: Stream, T, E> {
        #[pin]
        engine: Engine<S, Result<T, E>>,
    }
}

pin_project! {
    /// The stream returned by
    /// [`try_par_map_unordered`](crate::ConcurrentStreamExt::try_par_map_unordered):
    /// results as they finish, ending after the first `Err`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let checked: tokio_conc::pool::TryParMapUnordered<_, u32, &str> = futures::stream::iter(1..=3_u32)
    ///     .try_par_map_unordered(2, |x| async move { Ok(x) });
    /// assert_eq!(checked.collect::<Vec<_>>().await.len(), 3);
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TryParMapUnordered<S: Stream, T, E> {
        #[pin]
        engine: Engine<S, Result<T, E>>,
    }
}

shared_queue!(TryParMap<S, T, E>, Result<T, E>, "try_par_map", Input, Some(Result::is_err));
shared_queue!(
    TryParMapUnordered<S, T, E>,
    Result<T, E>,
    "try_par_map_unordered",
    Completion,
    Some(Result::is_err),
);
engine_stream!(TryParMap<S, T, E>, Result<T, E>);
engine_stream!(TryParMapUnordered<S, T, E>, Result<T, E>);
