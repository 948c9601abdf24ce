//! Publish/subscribe: a [`Topic`] delivers every message to every
//! [`Subscription`], each with a bounded buffer and an explicit policy for
//! when it falls behind.
//!
//! Go's usual publisher keeps a slice of subscriber channels and, so that one
//! slow subscriber cannot block the rest, starts a goroutine per message per
//! subscriber — unbounded goroutines, no order, no unsubscribe, no close.
//! `tokio::sync::broadcast` drops messages for a slow receiver and says so only
//! on its next `recv`. Here the choice is explicit, per subscription:
//!
//! | [`SlowSubscriber`] | when its buffer is full | `publish` counts it |
//! |---|---|---|
//! | [`Backpressure`](SlowSubscriber::Backpressure) (default) | the publisher waits for room | yes |
//! | [`DropOldest`](SlowSubscriber::DropOldest) | its oldest message is dropped, the new one kept | yes |
//! | [`DropNewest`](SlowSubscriber::DropNewest) | the new message is dropped for it | no |
//! | [`Disconnect`](SlowSubscriber::Disconnect) | it is cut off: it yields what it holds, then ends | no |
//!
//! # Guarantees
//!
//! * **Bounded.** Each subscription holds at most `capacity` messages (plus the
//!   replayed ones it starts with, at most `capacity` too). A Backpressure
//!   subscription holds up to `capacity` messages before the publisher waits.
//! * **Counted.** [`publish`](Topic::publish) returns how many subscriptions
//!   received the message: a full DropOldest subscription receives it (its
//!   oldest is dropped), a full DropNewest or Disconnect one does not. With no
//!   subscription it returns `Ok(0)` at once, having cloned nothing.
//! * **Never silent.** [`Subscription::missed`] counts what a subscription lost
//!   to its policy, as it happens; [`Subscription::with_gaps`] yields a
//!   [`Received::Missed`] at the place of each loss; a Disconnect subscription
//!   can ask [`Subscription::end_reason`] why it ended.
//! * **Ordered.** All publishes to a topic, from any number of tasks, fall into
//!   one order (each is numbered under the topic's lock); every subscription
//!   sees its messages in that order. So each publisher's own messages arrive
//!   in the order it published them, and any two subscriptions agree on the
//!   order of the messages both received. Publishers waiting for room are
//!   served first come, first served.
//! * **Cloned once per receiver.** A message is stored once; each subscription
//!   that receives it gets its own clone, and one that drops it (DropNewest,
//!   Disconnect) clones nothing. Backpressure and DropOldest subscriptions
//!   clone a message when they take it from the topic, so a DropOldest one
//!   that loses a message before reading it never clones it either. The stored
//!   original is dropped once every subscription has taken it and it is out of
//!   the replay window. (`Clone` and `Drop` of a message run under the topic's
//!   lock: they must not publish to the same topic.)
//! * **Nothing left behind.** No task is spawned. Dropping a subscription
//!   unsubscribes it and releases what it held at once (a publisher waiting on
//!   it goes on); when the topic's handles and subscriptions are all dropped,
//!   every message is dropped with them.
//!
//! # Stopping
//!
//! * [`Topic::close`] (or dropping the last `Topic` handle) is the graceful stop:
//!   publishing fails from then on, and each subscription ends after yielding
//!   what it holds. To drain on a `Shutdown`, close the topic when it starts
//!   draining.
//! * Cancelling the topic's [`TaskContext`](crate::TaskContext)
//!   ([`Topic::context`], or the context current when the topic was made) is
//!   the abort: subscriptions end at once, dropping what they hold, and
//!   [`end_reason`](Subscription::end_reason) is
//!   [`EndReason::Cancelled`]. Ask the context's `err()` too.
//!
//! # Performance
//!
//! Backpressure and DropOldest subscriptions read one shared ring: a publish
//! stores the message once and wakes only the subscriptions that are parked;
//! each subscription clones what it has not seen in batches, under one lock
//! per batch, and yields the copies without the lock. A publisher waiting for
//! room is woken once, by the subscription whose read makes the room.
//! DropNewest and Disconnect subscriptions get their clone in a queue of their
//! own when it is published, because what they hold is not a window of the
//! ring. Tokio's cooperative budget is charged once per batch a subscription
//! takes and once per 16 publishes that need not wait, so busy publishers and
//! subscribers still yield to the runtime.
//!
//! ```
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main]
//! # async fn main() {
//! let prices = Topic::new(4);
//! let ledger = prices.subscribe(); // Backpressure: sees every price
//! let ticker = prices.subscribe_with(SlowSubscriber::DropOldest).with_gaps();
//!
//! let ledger = tokio::spawn(ledger.collect::<Vec<u32>>());
//! for price in 100..110 {
//!     prices.publish(price).await.unwrap();
//! }
//! prices.close();
//!
//! assert_eq!(ledger.await.unwrap(), (100..110).collect::<Vec<_>>());
//! // The ticker was never read while the prices came: it kept the last 4.
//! let seen: Vec<_> = ticker.collect().await;
//! assert_eq!(seen[0], Received::Missed(6));
//! assert_eq!(seen[1..], [106, 107, 108, 109].map(Received::Message));
//! # }
//! ```

mod core;
mod deliver;
mod error;
mod publish;
mod room;
mod slab;
mod subscription;
mod topic;
mod watch;

pub use error::{EndReason, PublishError, TryPublishError};
pub use publish::Publish;
pub use subscription::{Received, Subscription, WithGaps};
pub use topic::Topic;

/// What a [`Topic`] does with a subscription whose buffer is full when a
/// message is published. Set for a topic with [`Topic::policy`], or per
/// subscription with [`Topic::subscribe_with`].
///
/// ```
/// use tokio_conc::pubsub::{SlowSubscriber, Topic};
///
/// let topic = Topic::new(1);
/// let oldest = topic.subscribe_with(SlowSubscriber::DropOldest);
/// let newest = topic.subscribe_with(SlowSubscriber::DropNewest);
/// let cut = topic.subscribe_with(SlowSubscriber::Disconnect);
/// assert_eq!(topic.try_publish(1), Ok(3));
/// // All three are full: only DropOldest takes 2 (dropping 1).
/// assert_eq!(topic.try_publish(2), Ok(1));
/// assert_eq!((oldest.missed(), newest.missed(), cut.missed()), (1, 1, 1));
/// assert_eq!(topic.subscriber_count(), 2); // `cut` was disconnected
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SlowSubscriber {
    /// The publisher waits until the subscription has room: nothing is lost,
    /// and the slowest Backpressure subscription sets the pace.
    #[default]
    Backpressure,
    /// The subscription's oldest message is dropped to make room for the new
    /// one, and counted in [`Subscription::missed`]. It always holds the
    /// latest `capacity` messages.
    DropOldest,
    /// The new message is dropped for this subscription, and counted in
    /// [`Subscription::missed`]. It keeps what it holds.
    DropNewest,
    /// The subscription is cut off: it yields what it holds, then ends, and
    /// [`Subscription::end_reason`] is [`EndReason::Disconnected`]. The message
    /// that found it full counts in [`Subscription::missed`].
    Disconnect,
}
