//! The policies for an item over the quota — [`Delay`], [`Discard`],
//! [`Fail`] — and what they report: [`DropCounter`], [`RateLimited`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::rate::RateLimitError;

#[cfg(doc)]
use super::RateLimit;

/// The default policy: an item over the quota waits until it fits, holding
/// back the items behind it (order is kept).
///
/// A waiting item is charged as of the instant it was due, however late its
/// task wakes up, so timer lateness does not slow the stream down: see
/// [`Rate`](crate::rate::Rate#keeping-the-pace-on-the-real-clock).
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

/// The policy set by [`RateLimit::drop_over_quota`]: an item over the quota is
/// dropped at once and counted.
#[derive(Clone, Debug, Default)]
pub struct Discard {
    pub(super) dropped: DropCounter,
}

/// The policy set by [`RateLimit::fail_over_quota`]: an item over the quota is
/// yielded at once as `Err(RateLimited)`, never delayed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fail;

/// How many items a [`RateLimit`] with [`drop_over_quota`](RateLimit::drop_over_quota)
/// has dropped; a handle that stays readable after the stream is consumed.
///
/// ```
/// use tokio_conc::rate::DropCounter;
/// assert_eq!(DropCounter::default().get(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    /// The number of items dropped so far.
    ///
    /// ```
    /// assert_eq!(tokio_conc::rate::DropCounter::default().get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// An item refused under the [`Fail`] policy, with why.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let out: Vec<_> = futures::stream::iter(["a", "b"])
///     .rate_limit(Rate::per_second(1))
///     .fail_over_quota()
///     .collect()
///     .await;
/// assert_eq!(out[0], Ok("a"));
/// let refused = out[1].as_ref().unwrap_err();
/// assert_eq!(*refused.item(), "b");
/// assert!(refused.error().ready_at().is_some());
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimited<T> {
    pub(super) item: T,
    pub(super) error: RateLimitError,
}

impl<T> RateLimited<T> {
    /// The refused item.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let refused = s.next().await.unwrap().unwrap_err();
    /// assert_eq!(*refused.item(), 2);
    /// # }
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Why it was refused: [`RateLimitError::OverQuota`] (with when it would
    /// pass) or [`RateLimitError::ExceedsBurst`].
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// use tokio_conc::rate::RateLimitError;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([5_u32]).rate_limit_weighted(Rate::per_second(1).burst(2), |c| *c).fail_over_quota());
    /// let refused = s.next().await.unwrap().unwrap_err();
    /// assert_eq!(refused.error(), &RateLimitError::ExceedsBurst { cost: 5, burst: 2 });
    /// # }
    /// ```
    pub fn error(&self) -> &RateLimitError {
        &self.error
    }

    /// The refused item, to retry or report.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let item: i32 = s.next().await.unwrap().unwrap_err().into_item();
    /// assert_eq!(item, 2);
    /// # }
    /// ```
    pub fn into_item(self) -> T {
        self.item
    }

    /// The refused item and why.
    ///
    /// ```
    /// # use futures::StreamExt;
    /// # use tokio_conc::prelude::*;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let mut s = std::pin::pin!(futures::stream::iter([1, 2]).rate_limit(Rate::per_second(1)).fail_over_quota());
    /// # s.next().await;
    /// let (item, why) = s.next().await.unwrap().unwrap_err().into_parts();
    /// assert_eq!(item, 2);
    /// assert!(why.ready_at().is_some());
    /// # }
    /// ```
    pub fn into_parts(self) -> (T, RateLimitError) {
        (self.item, self.error)
    }
}

impl<T> fmt::Debug for RateLimited<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for RateLimited<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item refused: {}", self.error)
    }
}

impl<T> Error for RateLimited<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}
