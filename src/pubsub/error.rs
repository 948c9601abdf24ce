//! What publishing can fail with, and why a subscription ends.

use std::error::Error;
use std::fmt;

use crate::context::ContextError;

/// [`Topic::publish`](super::Topic::publish) on a closed topic: the message
/// comes back.
///
/// A topic is closed by [`Topic::close`](super::Topic::close), by dropping its
/// last handle, or by its context ending
/// ([`Topic::context`](super::Topic::context)).
///
/// ```
/// use tokio_conc::pubsub::{PublishError, Topic};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let topic = Topic::new(4);
/// topic.close();
/// let PublishError(msg) = topic.publish("late").await.unwrap_err();
/// assert_eq!(msg, "late");
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PublishError<T>(pub T);

impl<T> PublishError<T> {
    /// The message that was not published.
    ///
    /// ```
    /// use tokio_conc::pubsub::PublishError;
    /// assert_eq!(PublishError(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublishError(..)")
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("publish on a closed topic")
    }
}

impl<T> Error for PublishError<T> {}

/// [`Topic::try_publish`](super::Topic::try_publish) did not publish: the
/// message comes back, delivered to nobody.
///
/// ```
/// use tokio_conc::pubsub::{Topic, TryPublishError};
///
/// let topic = Topic::new(1);
/// let _slow = topic.subscribe(); // Backpressure, never reads
/// assert_eq!(topic.try_publish(1), Ok(1));
/// assert_eq!(topic.try_publish(2), Err(TryPublishError::Full(2)));
/// topic.close();
/// assert_eq!(topic.try_publish(3), Err(TryPublishError::Closed(3)));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum TryPublishError<T> {
    /// A Backpressure subscription is full (or publishers are already waiting
    /// for room): [`publish`](super::Topic::publish) would wait.
    Full(T),
    /// The topic is closed.
    Closed(T),
}

impl<T> TryPublishError<T> {
    /// The message that was not published.
    ///
    /// ```
    /// use tokio_conc::pubsub::TryPublishError;
    /// assert_eq!(TryPublishError::Full("m").into_inner(), "m");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TryPublishError::Full(msg) | TryPublishError::Closed(msg) => msg,
        }
    }
}

impl<T> fmt::Debug for TryPublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPublishError::Full(_) => f.write_str("Full(..)"),
            TryPublishError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryPublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPublishError::Full(_) => f.write_str("a subscriber's buffer is full"),
            TryPublishError::Closed(_) => f.write_str("publish on a closed topic"),
        }
    }
}

impl<T> Error for TryPublishError<T> {}

/// Why a [`Subscription`](super::Subscription) ends (or will, once it has
/// yielded what it holds): [`Subscription::end_reason`](super::Subscription::end_reason).
///
/// ```
/// use tokio_conc::pubsub::{EndReason, Topic};
///
/// let topic = Topic::<u32>::new(4);
/// let sub = topic.subscribe();
/// assert_eq!(sub.end_reason(), None);
/// topic.close();
/// assert_eq!(sub.end_reason(), Some(EndReason::Closed));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The topic was closed ([`Topic::close`](super::Topic::close), or its last
    /// handle dropped). The subscription yields everything it holds first.
    Closed,
    /// A [`Disconnect`](super::SlowSubscriber::Disconnect) subscription was
    /// full when a message came: it was cut off. It yields what it held, the
    /// message that found it full counts in
    /// [`missed`](super::Subscription::missed), and nothing after it is sent.
    Disconnected,
    /// The topic's context was cancelled or passed its deadline: an abort.
    /// What the subscription held is dropped and it ends at once.
    Cancelled(ContextError),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Closed => f.write_str("the topic was closed"),
            EndReason::Disconnected => f.write_str("disconnected: too slow to keep up"),
            EndReason::Cancelled(err) => write!(f, "the topic was aborted: {err}"),
        }
    }
}
