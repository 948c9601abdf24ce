//! [`Subscription`]: one subscriber's stream of a topic's messages, and
//! [`WithGaps`], the same stream saying where messages were lost.
//!
//! Invariants (with those of `core.rs`):
//!
//! - `cache` holds copies of messages the subscription received and has not
//!   yielded, in sequence order. For a ring subscription they are the messages
//!   `cache[0].seq .. cursor`, with no hole: together with the ring's
//!   `cursor .. tail`, what it holds is one run of sequence numbers.
//! - `expected` is the sequence number of the next message with no gap before
//!   it. Every number skipped between two yielded messages is a message lost to
//!   the policy, so a gap is `seq - expected`, and the gaps reported sum to
//!   `missed` (a private subscription's trailing loss is reported at its end).
//! - A DropOldest subscription holds at most `capacity` messages as of the
//!   latest `tail` it read: anything older than `tail - capacity` is dropped
//!   (and counted) before it yields — exactly what dropping the oldest at each
//!   publish would have left it.
//! - A Backpressure subscription advances its shared `next` after each yield,
//!   before it looks at `wake_at` (`core.rs`, invariant 5).

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;

use super::SlowSubscriber;
use super::core::{Handle, Shared, Took};
use super::error::EndReason;

/// A subscriber's view of a [`Topic`](super::Topic): a
/// [`Stream`] of every message published after it subscribed (and of the
/// replayed ones before), in publish order, as its [`SlowSubscriber`] policy
/// allows.
///
/// It ends after the topic is closed and it has yielded what it holds; at once
/// if the topic's context is cancelled; after what it holds if it is a
/// [`Disconnect`](SlowSubscriber::Disconnect) subscription that fell behind.
/// [`end_reason`](Subscription::end_reason) says which. Dropping it
/// unsubscribes.
///
/// Losses are never silent: [`missed`](Subscription::missed) counts them, and
/// [`with_gaps`](Subscription::with_gaps) turns the stream into one that yields
/// [`Received::Missed`] where they happened.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::pubsub::Topic;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let topic = Topic::new(8);
/// let mut sub = topic.subscribe();
/// topic.publish("hello").await.unwrap();
/// topic.close();
/// assert_eq!(sub.next().await, Some("hello"));
/// assert_eq!(sub.next().await, None);
/// # }
/// ```
pub struct Subscription<T> {
    shared: Arc<Shared<T>>,
    handle: Handle,
    policy: SlowSubscriber,
    cache: VecDeque<(u64, T)>,
    expected: u64,
    /// Ring subscriptions: what it lost. Private ones keep theirs in the topic.
    missed: u64,
    /// The losses already reported as gaps.
    reported: u64,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Live,
    /// Ended, with this loss still to report as a trailing gap.
    Trailing(u64),
    Done,
}

/// What [`Subscription::refill`] did.
enum Refill {
    /// Its cache has more, or its state changed: look again.
    Took,
    /// A gap to report before the next message.
    Gap(u64),
    Parked,
}

/// An item of [`WithGaps`]: a message, or a note that messages were lost here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Received<T> {
    /// The next message.
    Message(T),
    /// This many messages were lost to the subscription's policy between the
    /// message before and the one after (or, at the end, after the last one).
    Missed(u64),
}

// Nothing in a subscription is structurally pinned: its messages are only moved.
impl<T> Unpin for Subscription<T> {}

impl<T> Subscription<T> {
    pub(super) fn new(
        shared: Arc<Shared<T>>,
        handle: Handle,
        policy: SlowSubscriber,
        start: u64,
    ) -> Self {
        let state = match handle {
            Handle::Detached => State::Done,
            _ => State::Live,
        };
        Subscription {
            shared,
            handle,
            policy,
            cache: VecDeque::new(),
            expected: start,
            missed: 0,
            reported: 0,
            state,
        }
    }

    /// This subscription's policy.
    ///
    /// ```
    /// use tokio_conc::pubsub::{SlowSubscriber, Topic};
    ///
    /// let topic = Topic::<u32>::new(4).policy(SlowSubscriber::DropOldest);
    /// assert_eq!(topic.subscribe().policy(), SlowSubscriber::DropOldest);
    /// let sub = topic.subscribe_with(SlowSubscriber::Backpressure);
    /// assert_eq!(sub.policy(), SlowSubscriber::Backpressure);
    /// ```
    pub fn policy(&self) -> SlowSubscriber {
        self.policy
    }

    /// How many messages this subscription lost to its policy so far: dropped
    /// as the oldest ([`DropOldest`](SlowSubscriber::DropOldest)), dropped as
    /// the newest ([`DropNewest`](SlowSubscriber::DropNewest)), or the one
    /// that cut it off ([`Disconnect`](SlowSubscriber::Disconnect)). Always 0
    /// for [`Backpressure`](SlowSubscriber::Backpressure). Counted as the
    /// losses happen, whether or not the subscription is being read.
    ///
    /// ```
    /// use tokio_conc::pubsub::{SlowSubscriber, Topic};
    ///
    /// let topic = Topic::new(2).policy(SlowSubscriber::DropOldest);
    /// let slow = topic.subscribe();
    /// for msg in 0..5 {
    ///     topic.try_publish(msg).unwrap();
    /// }
    /// assert_eq!(slow.missed(), 3); // it holds 3 and 4
    /// ```
    pub fn missed(&self) -> u64 {
        match &self.handle {
            Handle::Ring { cursor, .. } if self.policy == SlowSubscriber::DropOldest => {
                let first = self.cache.front().map_or(*cursor, |(seq, _)| *seq);
                let dropped_from = self.tail().saturating_sub(self.shared.capacity as u64);
                self.missed + dropped_from.saturating_sub(first)
            }
            Handle::Ring { .. } | Handle::Detached => self.missed,
            Handle::Private { id } => self.shared.lock().private_missed(*id),
        }
    }

    /// Why this subscription ends, once that is decided; `None` while it is
    /// live. It may still yield what it holds after this turns `Some`
    /// (except for [`EndReason::Cancelled`]).
    ///
    /// The first reason stays: a subscription cut off as
    /// [`Disconnected`](EndReason::Disconnected) whose topic is then
    /// cancelled still says `Disconnected`, but the cancel, an abort, drops
    /// what it held — as it does for every subscription.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::pubsub::{EndReason, SlowSubscriber, Topic};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new(1);
    /// let mut slow = topic.subscribe_with(SlowSubscriber::Disconnect);
    /// assert_eq!(topic.publish(1).await, Ok(1));
    /// assert_eq!(topic.publish(2).await, Ok(0)); // it was full: cut off
    /// assert_eq!(slow.end_reason(), Some(EndReason::Disconnected));
    /// assert_eq!(slow.next().await, Some(1)); // what it held
    /// assert_eq!(slow.next().await, None);
    /// assert_eq!(slow.missed(), 1);
    /// # }
    /// ```
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared.lock().end_reason(&self.handle)
    }

    /// This subscription as a stream of [`Received`] items: each message, and
    /// a [`Received::Missed`] where messages were lost, so a subscriber can
    /// tell exactly where its gaps are.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::pubsub::{Received, SlowSubscriber, Topic};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new(2);
    /// let slow = topic.subscribe_with(SlowSubscriber::DropNewest);
    /// for msg in 1..=4 {
    ///     topic.publish(msg).await.unwrap();
    /// }
    /// topic.publish(5).await.unwrap(); // still full: dropped too
    /// topic.close();
    /// let seen: Vec<_> = slow.with_gaps().collect().await;
    /// assert_eq!(seen, [Received::Message(1), Received::Message(2), Received::Missed(3)]);
    /// # }
    /// ```
    pub fn with_gaps(self) -> WithGaps<T> {
        WithGaps { inner: self }
    }

    fn tail(&self) -> u64 {
        self.shared.tail.load(Ordering::Acquire)
    }

    /// Drops what a DropOldest subscription can no longer hold.
    fn drop_lagging(&mut self) {
        let dropped_from = self.tail().saturating_sub(self.shared.capacity as u64);
        while self
            .cache
            .front()
            .is_some_and(|(seq, _)| *seq < dropped_from)
        {
            self.cache.pop_front();
            self.missed += 1;
        }
    }

    /// Reports the gap before message `seq`.
    fn gap_to(&mut self, seq: u64) -> u64 {
        let gap = seq - self.expected;
        self.expected = seq;
        self.reported += gap;
        gap
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.cache.clear();
    }

    fn bounds(&self) -> (usize, Option<usize>) {
        match self.state {
            State::Done => (0, Some(0)),
            _ => (0, None),
        }
    }
}

impl<T: Clone> Subscription<T> {
    /// Takes more from the topic.
    fn refill(&mut self, cx: &mut Context<'_>) -> Refill {
        let replay = self.shared.replay.load(Ordering::Relaxed);
        let mut core = self.shared.lock();
        let took = match &mut self.handle {
            Handle::Ring { id, cursor, .. } => {
                core.take_ring(*id, cursor, &mut self.cache, cx.waker(), replay)
            }
            Handle::Private { id } => {
                core.take_private(*id, self.expected, &mut self.cache, cx.waker())
            }
            Handle::Detached => Took::End { missed: 0 },
        };
        drop(core);
        match took {
            Took::Some { skipped } => {
                self.missed += skipped;
                Refill::Took
            }
            Took::GapBefore { seq } => Refill::Gap(self.gap_to(seq)),
            Took::Parked => Refill::Parked,
            Took::End { missed } => {
                let missed = missed.max(self.missed);
                self.state = match missed - self.reported {
                    0 => State::Done,
                    trailing => State::Trailing(trailing),
                };
                Refill::Took
            }
        }
    }

    /// The next message or gap.
    fn poll_received(&mut self, cx: &mut Context<'_>) -> Poll<Option<Received<T>>> {
        loop {
            match self.state {
                State::Live => {}
                State::Trailing(gap) => {
                    self.state = State::Done;
                    self.reported += gap;
                    return Poll::Ready(Some(Received::Missed(gap)));
                }
                State::Done => return Poll::Ready(None),
            }
            if self.shared.aborted.load(Ordering::Acquire) {
                self.finish();
                return Poll::Ready(None);
            }
            if self.policy == SlowSubscriber::DropOldest {
                self.drop_lagging();
            }
            if let Some(&(seq, _)) = self.cache.front() {
                if seq != self.expected {
                    return Poll::Ready(Some(Received::Missed(self.gap_to(seq))));
                }
                let (seq, msg) = self.cache.pop_front().expect("the front was just seen");
                self.expected = seq + 1;
                if let Handle::Ring {
                    next: Some(next), ..
                } = &self.handle
                {
                    self.shared.yielded(next, seq);
                }
                return Poll::Ready(Some(Received::Message(msg)));
            }
            // Tokio's cooperative budget is charged per batch taken from
            // the topic, not per message yielded from it.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            let refill = self.refill(cx);
            if !matches!(refill, Refill::Parked) {
                coop.made_progress();
            }
            match refill {
                Refill::Took => continue,
                Refill::Gap(gap) => return Poll::Ready(Some(Received::Missed(gap))),
                Refill::Parked => return Poll::Pending,
            }
        }
    }
}

impl<T: Clone> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            match ready!(self.poll_received(cx)) {
                Some(Received::Message(msg)) => return Poll::Ready(Some(msg)),
                Some(Received::Missed(_)) => continue,
                None => return Poll::Ready(None),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.bounds()
    }
}

impl<T: Clone> FusedStream for Subscription<T> {
    fn is_terminated(&self) -> bool {
        self.state != State::Live
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let held = self.shared.unsubscribe(&self.handle);
        drop(held);
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("policy", &self.policy)
            .field("missed", &self.missed())
            .field("ended", &(self.state == State::Done))
            .finish_non_exhaustive()
    }
}

/// A [`Subscription`] that also yields [`Received::Missed`] where messages
/// were lost: [`Subscription::with_gaps`].
///
/// It dereferences to the subscription, for
/// [`missed`](Subscription::missed) and [`end_reason`](Subscription::end_reason).
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::pubsub::{Received, SlowSubscriber, Topic};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let topic = Topic::new(2);
/// let mut slow = topic.subscribe_with(SlowSubscriber::DropOldest).with_gaps();
/// for msg in 1..=5 {
///     topic.publish(msg).await.unwrap();
/// }
/// assert_eq!(slow.missed(), 3);
/// assert_eq!(slow.next().await, Some(Received::Missed(3)));
/// assert_eq!(slow.next().await, Some(Received::Message(4)));
/// # }
/// ```
#[derive(Debug)]
pub struct WithGaps<T> {
    inner: Subscription<T>,
}

impl<T> WithGaps<T> {
    /// The plain subscription back.
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    /// let topic = Topic::<u8>::new(1);
    /// let sub = topic.subscribe().with_gaps().into_inner();
    /// assert_eq!(sub.missed(), 0);
    /// ```
    pub fn into_inner(self) -> Subscription<T> {
        self.inner
    }
}

impl<T> Deref for WithGaps<T> {
    type Target = Subscription<T>;

    fn deref(&self) -> &Subscription<T> {
        &self.inner
    }
}

impl<T: Clone> Stream for WithGaps<T> {
    type Item = Received<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received<T>>> {
        self.inner.poll_received(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.bounds()
    }
}

impl<T: Clone> FusedStream for WithGaps<T> {
    fn is_terminated(&self) -> bool {
        self.inner.state == State::Done
    }
}
