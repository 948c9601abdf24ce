//! [`Topic`]: the publisher's handle, and the builder that sets a topic up.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::SlowSubscriber;
use super::core::Shared;
use super::error::TryPublishError;
use super::publish::{Publish, try_publish};
use super::subscription::Subscription;
use super::watch::watch;
use crate::context::TaskContext;

/// A publish/subscribe topic: every message published reaches every
/// subscription, each with a bounded buffer of `capacity` messages and a
/// [`SlowSubscriber`] policy for when that buffer is full.
///
/// A cheap handle: clones publish to the same topic. When the last handle is
/// dropped the topic is closed, as by [`close`](Topic::close).
///
/// The setters [`policy`](Topic::policy), [`replay`](Topic::replay) and
/// [`context`](Topic::context) are a builder: call them on the new topic,
/// before cloning it or subscribing.
///
/// See the [module docs](super) for the guarantees.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main]
/// # async fn main() {
/// let topic = Topic::new(16);
/// let subscribers: Vec<_> = (0..3)
///     .map(|_| tokio::spawn(topic.subscribe().collect::<Vec<u32>>()))
///     .collect();
/// for msg in 0..100 {
///     assert_eq!(topic.publish(msg).await, Ok(3));
/// }
/// topic.close();
/// for subscriber in subscribers {
///     assert_eq!(subscriber.await.unwrap(), (0..100).collect::<Vec<_>>());
/// }
/// # }
/// ```
pub struct Topic<T> {
    shared: Arc<Shared<T>>,
    context: Option<TaskContext>,
}

impl<T: Clone + Send + 'static> Topic<T> {
    /// A topic whose subscriptions hold up to `capacity` messages each, with
    /// the [`Backpressure`](SlowSubscriber::Backpressure) policy unless
    /// [`policy`](Topic::policy) says otherwise.
    ///
    /// Bound to the current [`TaskContext`] if there is one (the crate's
    /// ambient-context rule); [`context`](Topic::context) binds it to another.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    ///
    /// let topic = Topic::<String>::new(64);
    /// assert_eq!(topic.capacity(), 64);
    /// assert_eq!(topic.subscriber_count(), 0);
    /// ```
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "`capacity` must be at least 1, got 0");
        let shared = Arc::new(Shared::new(capacity));
        let context = crate::internal::ambient_context(None);
        if let Some(ctx) = &context {
            watch(&shared, ctx);
        }
        Topic { shared, context }
    }

    /// Sets the policy of subscriptions made with
    /// [`subscribe`](Topic::subscribe) ([`subscribe_with`](Topic::subscribe_with)
    /// chooses one per subscription).
    ///
    /// ```
    /// use tokio_conc::pubsub::{SlowSubscriber, Topic};
    ///
    /// let topic = Topic::<u64>::new(8).policy(SlowSubscriber::DropOldest);
    /// assert_eq!(topic.subscribe().policy(), SlowSubscriber::DropOldest);
    /// ```
    pub fn policy(self, policy: SlowSubscriber) -> Self {
        self.shared.lock().policy = policy;
        self
    }

    /// Keeps the last `k` messages, so that each new subscription starts with
    /// them (they count against its `capacity`). `0`, the default, keeps none.
    ///
    /// # Panics
    ///
    /// If `k` is more than the topic's `capacity`: a subscription could not
    /// hold them.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::pubsub::Topic;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new(8).replay(2);
    /// for msg in ["a", "b", "c"] {
    ///     topic.publish(msg).await.unwrap(); // nobody listens yet
    /// }
    /// let late = topic.subscribe();
    /// topic.close();
    /// assert_eq!(late.collect::<Vec<_>>().await, ["b", "c"]);
    /// # }
    /// ```
    pub fn replay(self, k: usize) -> Self {
        let capacity = self.shared.capacity;
        assert!(
            k <= capacity,
            "`replay` must be at most the topic's `capacity` ({capacity}), got {k}"
        );
        // Under the lock: publishers and subscriptions read it there.
        let core = self.shared.lock();
        self.shared.replay.store(k, Ordering::Relaxed);
        drop(core);
        self
    }

    /// Binds the topic to `ctx`, in place of the context current at
    /// [`new`](Topic::new): when `ctx` is cancelled or passes its deadline the
    /// topic is aborted — publishing fails, and every subscription ends at once,
    /// dropping what it holds, with [`EndReason::Cancelled`](super::EndReason::Cancelled).
    /// (To let subscriptions drain instead, [`close`](Topic::close) the topic.)
    ///
    /// No task is spawned: the context's token wakes the topic directly.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let topic = Topic::new(8).context(&ctx);
    /// let mut sub = topic.subscribe();
    /// topic.publish(1).await.unwrap();
    /// ctx.cancel();
    /// assert_eq!(sub.next().await, None); // aborted: 1 is dropped
    /// assert!(topic.publish(2).await.is_err());
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        watch(&self.shared, ctx);
        self.context = Some(ctx.clone());
        self
    }

    /// Publishes `msg` to every subscription, waiting while a
    /// [`Backpressure`](SlowSubscriber::Backpressure) one is full. Resolves to
    /// how many subscriptions received it (see the [module docs](super) for
    /// how each policy counts), or to [`PublishError`](super::PublishError)
    /// with `msg` once the topic is closed. With no subscription it is `Ok(0)`
    /// at once.
    ///
    /// Publishers that wait are served in order. Dropping the future before it
    /// completes publishes nothing.
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new(4);
    /// assert_eq!(topic.publish("nobody hears this").await, Ok(0));
    /// let _sub = topic.subscribe();
    /// assert_eq!(topic.publish("one hears this").await, Ok(1));
    /// # }
    /// ```
    pub fn publish(&self, msg: T) -> Publish<'_, T> {
        Publish::new(&self.shared, msg)
    }

    /// Publishes `msg` only if it can be done without waiting: all or
    /// nothing. Where [`publish`](Topic::publish) would wait for any
    /// subscription, it delivers to none and hands `msg` back in
    /// [`TryPublishError::Full`].
    ///
    /// ```
    /// use tokio_conc::pubsub::{SlowSubscriber, Topic, TryPublishError};
    ///
    /// let topic = Topic::new(1);
    /// let _lossy = topic.subscribe_with(SlowSubscriber::DropNewest);
    /// let _strict = topic.subscribe(); // Backpressure
    /// assert_eq!(topic.try_publish('a'), Ok(2));
    /// // The strict one is full: nobody gets 'b', not even the lossy one.
    /// assert_eq!(topic.try_publish('b'), Err(TryPublishError::Full('b')));
    /// ```
    pub fn try_publish(&self, msg: T) -> Result<usize, TryPublishError<T>> {
        try_publish(&self.shared, msg)
    }

    /// A new subscription with the topic's [`policy`](Topic::policy): it sees
    /// every message published from now on (after the replayed ones, if the
    /// topic [replays](Topic::replay)).
    ///
    /// Subscribing to a closed topic gives a subscription that yields the
    /// replayed messages, then ends; to an aborted one, one that ends at once.
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    ///
    /// let topic = Topic::<u8>::new(4);
    /// let sub = topic.subscribe();
    /// assert_eq!(topic.subscriber_count(), 1);
    /// drop(sub); // unsubscribes
    /// assert_eq!(topic.subscriber_count(), 0);
    /// ```
    pub fn subscribe(&self) -> Subscription<T> {
        let policy = self.shared.lock().policy;
        self.subscribe_with(policy)
    }

    /// A new subscription with its own `policy`.
    ///
    /// ```
    /// use tokio_conc::pubsub::{SlowSubscriber, Topic};
    ///
    /// let topic = Topic::new(1);
    /// let audit = topic.subscribe(); // Backpressure: sees everything
    /// let dashboard = topic.subscribe_with(SlowSubscriber::DropOldest);
    /// assert_eq!(topic.try_publish(1), Ok(2));
    /// # drop((audit, dashboard));
    /// ```
    pub fn subscribe_with(&self, policy: SlowSubscriber) -> Subscription<T> {
        let (handle, start) = self.shared.lock().subscribe(policy, &self.shared);
        Subscription::new(Arc::clone(&self.shared), handle, policy, start)
    }
}

impl<T> Topic<T> {
    /// The context the topic is bound to ([`context`](Topic::context), or the
    /// one current at [`new`](Topic::new)), if any.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    ///
    /// let ctx = TaskContext::background();
    /// assert!(Topic::<u8>::new(1).task_context().is_none());
    /// assert!(Topic::<u8>::new(1).context(&ctx).task_context().is_some());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// Closes the topic: publishing fails from now on, and every subscription
    /// ends after it has yielded what it holds ([`EndReason::Closed`](super::EndReason::Closed)).
    /// Publishers waiting for room get their message back. Idempotent.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::pubsub::Topic;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new(4);
    /// let sub = topic.subscribe();
    /// topic.publish(1).await.unwrap();
    /// topic.publish(2).await.unwrap();
    /// topic.close();
    /// assert_eq!(sub.collect::<Vec<_>>().await, [1, 2]); // drained, then ended
    /// # }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the topic is closed (by [`close`](Topic::close), or aborted by
    /// its context).
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    /// let topic = Topic::<u8>::new(1);
    /// assert!(!topic.is_closed());
    /// topic.close();
    /// assert!(topic.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// How many subscriptions are live: subscribed and not dropped, nor cut
    /// off by [`Disconnect`](SlowSubscriber::Disconnect).
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    /// let topic = Topic::<u8>::new(1);
    /// let subs: Vec<_> = (0..3).map(|_| topic.subscribe()).collect();
    /// assert_eq!(topic.subscriber_count(), 3);
    /// ```
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.load(Ordering::SeqCst)
    }

    /// The most messages each subscription holds.
    ///
    /// ```
    /// use tokio_conc::pubsub::Topic;
    /// assert_eq!(Topic::<u8>::new(3).capacity(), 3);
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::SeqCst);
        Topic {
            shared: Arc::clone(&self.shared),
            context: self.context.clone(),
        }
    }
}

impl<T> Drop for Topic<T> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.close();
        }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("capacity", &self.shared.capacity)
            .field("subscribers", &self.subscriber_count())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
