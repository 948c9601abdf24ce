//! `Topic`: each slow-subscriber policy against a stalled subscriber, order,
//! races of subscribe/unsubscribe with publishers, replay, close, context,
//! and what is left behind.

mod pubsub_support;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use pubsub_support::{
    Census, LONG, POLICIES, alive_tasks, join_within, one_of_each, tasks_back_to,
};
use tokio::time::timeout;
use tokio_conc::prelude::*;
use tokio_conc::pubsub::{EndReason, PublishError, TryPublishError};

const CAPACITY: usize = 4;
const MESSAGES: u32 = 20;

/// Whatever `sub` yields without waiting.
fn drain_ready<S: futures::Stream + Unpin>(sub: &mut S) -> Vec<S::Item> {
    let mut out = Vec::new();
    while let Some(Some(item)) = sub.next().now_or_never() {
        out.push(item);
    }
    out
}

/// What one policy did: two fast subscriptions read after every publish, a
/// third (same policy) never reads until the end. The fast ones always see
/// every message, in order.
#[derive(Debug, PartialEq)]
struct Stalled {
    /// What each publish returned.
    reached: Vec<usize>,
    /// What the stalled one yielded at the end, gaps included.
    slow: Vec<Received<u32>>,
    /// Its `missed()` and `end_reason()` just before the close.
    slow_missed: u64,
    slow_end: Option<EndReason>,
    /// `subscriber_count()` just before the close.
    count_after: usize,
}

fn run_with_a_stalled_subscriber(policy: SlowSubscriber) -> Stalled {
    let topic = Topic::new(CAPACITY).policy(policy);
    let mut fast = [topic.subscribe(), topic.subscribe()];
    let slow = topic.subscribe().with_gaps();
    let mut seen = vec![Vec::new(), Vec::new()];
    let mut reached = Vec::new();
    for msg in 0..MESSAGES {
        reached.push(topic.try_publish(msg).expect("only Backpressure waits"));
        for (sub, seen) in fast.iter_mut().zip(&mut seen) {
            seen.extend(drain_ready(sub));
        }
    }
    let run = Stalled {
        reached,
        slow: Vec::new(),
        slow_missed: slow.missed(),
        slow_end: slow.end_reason(),
        count_after: topic.subscriber_count(),
    };
    topic.close();
    for (sub, seen) in fast.iter_mut().zip(&mut seen) {
        seen.extend(futures::executor::block_on(sub.collect::<Vec<_>>()));
        assert_eq!(
            *seen,
            (0..MESSAGES).collect::<Vec<_>>(),
            "a fast subscriber"
        );
    }
    Stalled {
        slow: futures::executor::block_on(slow.collect()),
        ..run
    }
}

fn everything() -> Vec<u32> {
    (0..MESSAGES).collect()
}

/// What the stalled subscription held, as yielded.
fn messages(range: std::ops::Range<u32>) -> impl Iterator<Item = Received<u32>> {
    range.map(Received::Message)
}

/// `publish` counts: 3 while the stalled one has room, then only the fast two.
fn all_three_until_the_slow_one_is_full() -> Vec<usize> {
    let mut reached = vec![3; CAPACITY];
    reached.resize(MESSAGES as usize, 2);
    reached
}

#[test]
fn drop_oldest_keeps_the_latest_for_the_stalled_one_and_counts_it_as_reached() {
    let lost = MESSAGES - CAPACITY as u32;
    let expected = Stalled {
        reached: vec![3; MESSAGES as usize],
        slow: std::iter::once(Received::Missed(lost.into()))
            .chain(messages(lost..MESSAGES))
            .collect(),
        slow_missed: lost.into(),
        slow_end: None,
        count_after: 3,
    };
    assert_eq!(
        run_with_a_stalled_subscriber(SlowSubscriber::DropOldest),
        expected
    );
}

#[test]
fn drop_newest_keeps_the_first_for_the_stalled_one_and_does_not_count_it() {
    let lost = MESSAGES - CAPACITY as u32;
    let expected = Stalled {
        reached: all_three_until_the_slow_one_is_full(),
        slow: messages(0..CAPACITY as u32)
            .chain([Received::Missed(lost.into())])
            .collect(),
        slow_missed: lost.into(),
        slow_end: None,
        count_after: 3,
    };
    assert_eq!(
        run_with_a_stalled_subscriber(SlowSubscriber::DropNewest),
        expected
    );
}

#[test]
fn disconnect_cuts_the_stalled_one_off_after_what_it_held() {
    let expected = Stalled {
        reached: all_three_until_the_slow_one_is_full(),
        // The message that found it full is its one loss.
        slow: messages(0..CAPACITY as u32)
            .chain([Received::Missed(1)])
            .collect(),
        slow_missed: 1,
        slow_end: Some(EndReason::Disconnected),
        count_after: 2,
    };
    assert_eq!(
        run_with_a_stalled_subscriber(SlowSubscriber::Disconnect),
        expected
    );
}

#[tokio::test(start_paused = true)]
async fn backpressure_waits_for_the_stalled_subscriber_and_loses_nothing() {
    let topic = Topic::new(CAPACITY);
    let fast: Vec<_> = (0..2)
        .map(|_| tokio::spawn(topic.subscribe().collect::<Vec<u32>>()))
        .collect();
    let mut slow = topic.subscribe();
    for msg in 0..4 {
        assert_eq!(topic.publish(msg).await, Ok(3));
    }
    {
        // The slow one holds `capacity`: the next publish waits for it.
        let mut fifth = pin!(topic.publish(4));
        assert!(futures::poll!(fifth.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(futures::poll!(fifth.as_mut()).is_pending());
        assert_eq!(topic.try_publish(99), Err(TryPublishError::Full(99)));
        assert_eq!(slow.next().await, Some(0));
        let reached = timeout(LONG, fifth).await.expect("publish hung");
        assert_eq!(reached, Ok(3));
    }

    let reader = tokio::spawn(async move {
        let mut seen = vec![0];
        while let Some(msg) = slow.next().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen.push(msg);
        }
        seen
    });
    for msg in 5..MESSAGES {
        assert_eq!(topic.publish(msg).await, Ok(3));
    }
    drop(topic);
    assert_eq!(
        timeout(LONG, reader).await.expect("hung").unwrap(),
        everything()
    );
    for sub in fast {
        assert_eq!(sub.await.unwrap(), everything());
    }
}

#[tokio::test]
async fn a_lossy_subscription_counts_what_it_lost_before_it_reads() {
    let topic = Topic::new(2);
    let oldest = topic.subscribe_with(SlowSubscriber::DropOldest);
    let newest = topic.subscribe_with(SlowSubscriber::DropNewest);
    for msg in 0..7 {
        topic.publish(msg).await.unwrap();
    }
    assert_eq!((oldest.missed(), newest.missed()), (5, 5));
}

#[test]
fn gaps_are_reported_where_they_happened() {
    let topic = Topic::new(2);
    let mut newest = topic.subscribe_with(SlowSubscriber::DropNewest).with_gaps();
    let mut oldest = topic.subscribe_with(SlowSubscriber::DropOldest).with_gaps();
    let publish = |range: std::ops::Range<u32>| {
        for msg in range {
            topic.try_publish(msg).unwrap();
        }
    };
    publish(0..5); // newest holds 0, 1 (2..5 dropped); oldest holds 3, 4
    assert_eq!(
        drain_ready(&mut oldest.by_ref().take(2)),
        [Received::Missed(3), Received::Message(3)]
    );
    assert_eq!(
        drain_ready(&mut newest.by_ref().take(1)),
        [Received::Message(0)]
    );
    publish(5..8); // newest takes 5, drops 6, 7; oldest drops 4 and 5
    use Received::{Message, Missed};
    assert_eq!(
        drain_ready(&mut newest),
        [Message(1), Missed(3), Message(5)]
    );
    assert_eq!(
        drain_ready(&mut oldest),
        [Missed(2), Message(6), Message(7)]
    );
    publish(8..9);
    topic.close();
    assert_eq!(drain_ready(&mut newest), [Missed(2), Message(8)]);
    assert_eq!(drain_ready(&mut oldest), [Message(8)]);
    assert_eq!((newest.missed(), oldest.missed()), (5, 5));
}

#[tokio::test]
async fn one_subscription_caches_a_batch_but_drop_oldest_still_drops_from_it() {
    let topic = Topic::new(4).policy(SlowSubscriber::DropOldest);
    let mut sub = topic.subscribe();
    for msg in 0..4 {
        topic.publish(msg).await.unwrap();
    }
    assert_eq!(sub.next().await, Some(0)); // it took 0..4 in one go
    for msg in 4..7 {
        topic.publish(msg).await.unwrap(); // holds 1..4, then 4 more: 1 and 2 go
    }
    assert_eq!(sub.missed(), 2);
    topic.close();
    assert_eq!(sub.collect::<Vec<_>>().await, [3, 4, 5, 6]);
}

/// `publishers` tasks, publisher `p` publishing `(p, 0..each)`; each returns
/// what its publishes reached.
fn spawn_publishers(
    topic: &Topic<(u32, u32)>,
    publishers: u32,
    each: u32,
) -> Vec<tokio::task::JoinHandle<Vec<usize>>> {
    (0..publishers)
        .map(|p| {
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut reached = Vec::new();
                for k in 0..each {
                    reached.push(topic.publish((p, k)).await.unwrap());
                }
                reached
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscription_sees_one_order_and_each_publishers_own_order() {
    const PUBLISHERS: u32 = 4;
    const EACH: u32 = 2_000;
    let topic = Topic::new(8);
    let subs: Vec<_> = (0..3)
        .map(|_| tokio::spawn(topic.subscribe().collect::<Vec<(u32, u32)>>()))
        .collect();
    let publishers = spawn_publishers(&topic, PUBLISHERS, EACH);
    drop(topic);
    for reached in join_within(publishers, "a publisher").await {
        assert!(reached.iter().all(|&n| n == 3));
    }
    let orders = join_within(subs, "a subscriber").await;
    for order in &orders {
        assert_eq!(order.len(), (PUBLISHERS * EACH) as usize);
        let mut next = HashMap::new();
        for &(p, k) in order {
            let expected = next.entry(p).or_insert(0);
            assert_eq!(k, *expected, "publisher {p} out of order");
            *expected += 1;
        }
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_come_and_go_while_many_tasks_publish() {
    const PUBLISHERS: u32 = 4;
    const EACH: u32 = 3_000;
    let topic = Topic::new(16);
    let staying: Vec<_> = [
        SlowSubscriber::Backpressure,
        SlowSubscriber::Backpressure,
        SlowSubscriber::DropOldest,
    ]
    .into_iter()
    .map(|policy| tokio::spawn(topic.subscribe_with(policy).with_gaps().collect::<Vec<_>>()))
    .collect();
    let done = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..3_usize)
        .map(|c| {
            let topic = topic.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut round = c;
                while !done.load(Ordering::SeqCst) {
                    let mut sub = topic.subscribe_with(POLICIES[round % 4]);
                    let mut last = HashMap::new();
                    for _ in 0..round % 7 {
                        match sub.next().await {
                            Some((p, k)) => {
                                let before = last.insert(p, k).unwrap_or(0);
                                assert!(k >= before, "out of order");
                            }
                            None => break,
                        }
                    }
                    drop(sub);
                    round += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let publishers = spawn_publishers(&topic, PUBLISHERS, EACH);
    join_within(publishers, "a publisher").await;
    done.store(true, Ordering::SeqCst);
    topic.close(); // a churner may be waiting for a message
    join_within(churners, "a churner").await;
    let total = (PUBLISHERS * EACH) as usize;
    for (i, seen) in join_within(staying, "a subscriber")
        .await
        .into_iter()
        .enumerate()
    {
        let mut missed = 0;
        let mut messages = 0;
        let mut next = HashMap::new();
        for item in seen {
            match item {
                Received::Missed(n) => missed += n as usize,
                Received::Message((p, k)) => {
                    messages += 1;
                    let expected = next.entry(p).or_insert(0);
                    assert!(k >= *expected, "publisher {p} out of order");
                    *expected = k + 1;
                }
            }
        }
        assert_eq!(messages + missed, total, "subscription {i}");
        if i < 2 {
            assert_eq!(missed, 0, "a Backpressure subscription lost messages");
        }
    }
}

#[tokio::test]
async fn replay_gives_each_new_subscription_the_last_messages() {
    let topic = Topic::new(4).replay(3);
    let early = topic.subscribe();
    topic.publish(1).await.unwrap();
    let after_one = topic.subscribe_with(SlowSubscriber::DropNewest);
    for msg in 2..=4 {
        topic.publish(msg).await.unwrap(); // `early` then holds 1..=4: full
    }
    let late = topic.subscribe_with(SlowSubscriber::DropOldest);
    let late_disconnect = topic.subscribe_with(SlowSubscriber::Disconnect);
    topic.close();
    let after_close = topic.subscribe();
    assert_eq!(early.collect::<Vec<_>>().await, [1, 2, 3, 4]);
    assert_eq!(after_one.collect::<Vec<_>>().await, [1, 2, 3, 4]);
    assert_eq!(late.collect::<Vec<_>>().await, [2, 3, 4]);
    assert_eq!(late_disconnect.collect::<Vec<_>>().await, [2, 3, 4]);
    assert_eq!(after_close.collect::<Vec<_>>().await, [2, 3, 4]);
}

#[tokio::test]
async fn replayed_messages_count_against_capacity() {
    let topic = Topic::new(2).replay(2);
    topic.publish('a').await.unwrap();
    topic.publish('b').await.unwrap();
    let sub = topic.subscribe(); // Backpressure, holding a and b
    assert_eq!(topic.try_publish('c'), Err(TryPublishError::Full('c')));
    drop(sub);
    assert_eq!(topic.try_publish('c'), Ok(0));
}

#[tokio::test]
async fn close_drains_what_each_subscription_holds_and_refuses_new_messages() {
    let topic = Topic::new(4);
    let subs = one_of_each(&topic);
    for msg in 0..3 {
        topic.publish(msg).await.unwrap();
    }
    topic.close();
    assert!(topic.is_closed());
    assert_eq!(topic.publish(9).await, Err(PublishError(9)));
    assert_eq!(topic.try_publish(9), Err(TryPublishError::Closed(9)));
    for mut sub in subs {
        assert_eq!(sub.end_reason(), Some(EndReason::Closed));
        assert_eq!(sub.by_ref().collect::<Vec<_>>().await, [0, 1, 2]);
        assert!(futures::stream::FusedStream::is_terminated(&sub));
        assert_eq!(futures::Stream::size_hint(&sub), (0, Some(0)));
        assert_eq!(sub.next().await, None);
    }
}

#[tokio::test]
async fn close_hands_a_waiting_publisher_its_message_back() {
    let topic = Topic::new(1);
    let _stalled = topic.subscribe();
    topic.publish("first").await.unwrap();
    let waiting = tokio::spawn({
        let topic = topic.clone();
        async move { topic.publish("second").await }
    });
    tokio::task::yield_now().await;
    topic.close();
    let outcome = timeout(LONG, waiting)
        .await
        .expect("publisher hung")
        .unwrap();
    assert_eq!(outcome, Err(PublishError("second")));
}

#[tokio::test]
async fn dropping_every_topic_handle_closes_it() {
    let topic = Topic::new(4);
    let mut sub = topic.subscribe();
    let other = topic.clone();
    topic.publish(1).await.unwrap();
    drop(topic);
    assert_eq!(sub.end_reason(), None, "a handle is left");
    drop(other);
    assert_eq!(sub.end_reason(), Some(EndReason::Closed));
    assert_eq!(sub.next().await, Some(1));
    assert_eq!(sub.next().await, None);
}

#[tokio::test]
async fn a_dropped_subscription_releases_a_waiting_publisher() {
    let topic = Topic::new(1);
    let stalled = topic.subscribe();
    topic.publish(1).await.unwrap();
    let mut second = pin!(topic.publish(2));
    assert!(futures::poll!(second.as_mut()).is_pending());
    drop(stalled);
    assert_eq!(timeout(LONG, second).await.expect("publisher hung"), Ok(0));
    assert_eq!(topic.subscriber_count(), 0);
}

#[tokio::test]
async fn waiting_publishers_go_in_turn_and_a_dropped_one_passes_its_turn_on() {
    let topic = Topic::new(1);
    let mut sub = topic.subscribe();
    topic.publish(0).await.unwrap();
    let mut first = pin!(topic.publish(1));
    let mut dropped = Box::pin(topic.publish(99));
    let mut third = pin!(topic.publish(3));
    assert!(futures::poll!(first.as_mut()).is_pending());
    assert!(futures::poll!(dropped.as_mut()).is_pending());
    assert!(futures::poll!(third.as_mut()).is_pending());
    drop(dropped);
    assert_eq!(sub.next().await, Some(0));
    // Only the first in line may take the room.
    assert!(futures::poll!(third.as_mut()).is_pending());
    assert_eq!(futures::poll!(first.as_mut()), Poll::Ready(Ok(1)));
    assert_eq!(sub.next().await, Some(1));
    assert_eq!(timeout(LONG, third).await.expect("hung"), Ok(1));
    assert_eq!(sub.next().await, Some(3));
}

#[tokio::test]
async fn try_publish_delivers_to_all_or_to_none() {
    let census = Census::new();
    let topic = Topic::new(2);
    let mut strict = topic.subscribe();
    let oldest = topic.subscribe_with(SlowSubscriber::DropOldest);
    let newest = topic.subscribe_with(SlowSubscriber::DropNewest);
    let cut = topic.subscribe_with(SlowSubscriber::Disconnect);
    for id in 0..2 {
        assert_eq!(topic.try_publish(census.message(id)), Ok(4));
    }
    let refused = topic.try_publish(census.message(2)).unwrap_err();
    assert!(matches!(&refused, TryPublishError::Full(msg) if msg.id == 2));
    // DropNewest and Disconnect copies are made at publish time, the others'
    // when they read: 2 each for the first two, none of the refused one.
    assert_eq!(census.clones(), 2 * 2);
    assert_eq!(
        (
            oldest.missed(),
            newest.missed(),
            cut.missed(),
            cut.end_reason()
        ),
        (0, 0, 0, None)
    );
    drop(refused);
    assert_eq!(strict.next().await.map(|m| m.id), Some(0));
    assert_eq!(topic.try_publish(census.message(3)), Ok(2));
    assert_eq!(
        (oldest.missed(), newest.missed(), cut.missed()),
        (1, 1, 1),
        "now each lossy one lost 3 its own way"
    );
}

#[tokio::test]
async fn publishing_to_nobody_is_ok_zero_and_clones_nothing() {
    let census = Census::new();
    let topic = Topic::new(8);
    for id in 0..10 {
        assert_eq!(topic.publish(census.message(id)).await, Ok(0));
        assert_eq!(topic.try_publish(census.message(id)), Ok(0));
    }
    assert_eq!(census.clones(), 0);
    assert_eq!(census.alive(), 0);
}

#[tokio::test]
async fn each_receiver_gets_one_clone_and_a_dropping_one_none() {
    let census = Census::new();
    let topic = Topic::new(1);
    let mut subs = [
        topic.subscribe(),
        topic.subscribe_with(SlowSubscriber::DropOldest),
        topic.subscribe_with(SlowSubscriber::DropNewest),
    ];
    assert_eq!(topic.publish(census.message(0)).await, Ok(3));
    assert_eq!(census.clones(), 1, "the DropNewest queue's copy");
    for sub in &mut subs[..2] {
        sub.next().await.unwrap();
    }
    assert_eq!(census.clones(), 3);
    // The DropNewest one is still full: it gets no clone of this one.
    assert_eq!(topic.publish(census.message(1)).await, Ok(2));
    for sub in &mut subs[..2] {
        sub.next().await.unwrap();
    }
    assert_eq!(census.clones(), 5);
    // Everyone that needed the stored originals has them: none is kept.
    assert_eq!(census.alive(), 1, "only the DropNewest one's copy of 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_after_the_topic_and_subscriptions_drop() {
    let tasks_before = alive_tasks();
    let census = Census::new();
    {
        let ctx = TaskContext::background();
        let topic = Topic::new(8).replay(4).context(&ctx);
        let subs = one_of_each(&topic);
        let mut readers = Vec::new();
        for mut sub in subs {
            readers.push(tokio::spawn(async move {
                // Read a little, then drop the subscription holding the rest.
                for _ in 0..3 {
                    sub.next().await;
                }
            }));
        }
        for id in 0..100 {
            if topic.publish(census.message(id)).await.is_err() {
                break;
            }
        }
        join_within(readers, "a reader").await;
        let _unread = topic.subscribe();
        assert!(census.alive() > 0, "the replay window is kept");
    }
    assert_eq!(census.alive(), 0);
    assert_eq!(census.made(), census.dropped());
    tasks_back_to(tasks_before).await;
}

#[test]
#[should_panic(expected = "`capacity` must be at least 1, got 0")]
fn capacity_zero_panics_naming_it() {
    let _ = Topic::<u8>::new(0);
}

#[test]
#[should_panic(expected = "`replay` must be at most the topic's `capacity` (2), got 3")]
fn replaying_more_than_capacity_panics_naming_it() {
    let _ = Topic::<u8>::new(2).replay(3);
}

#[tokio::test]
async fn cancelling_the_context_aborts_the_topic() {
    let census = Census::new();
    let ctx = TaskContext::background();
    let topic = Topic::new(1).context(&ctx);
    assert!(topic.task_context().is_some());
    let mut parked = topic.subscribe_with(SlowSubscriber::DropOldest);
    let mut full = topic.subscribe();
    topic.publish(census.message(0)).await.unwrap();
    assert_eq!(parked.next().await.map(|m| m.id), Some(0));
    let parked = tokio::spawn(async move { parked.next().await });
    let blocked = tokio::spawn({
        let topic = topic.clone();
        let msg = census.message(1);
        async move { topic.publish(msg).await.map_err(PublishError::into_inner) }
    });
    tokio::task::yield_now().await;
    ctx.cancel();
    assert!(
        timeout(LONG, parked)
            .await
            .expect("hung")
            .unwrap()
            .is_none()
    );
    let handed_back = timeout(LONG, blocked).await.expect("hung").unwrap();
    assert_eq!(handed_back.unwrap_err().id, 1);
    assert_eq!(
        full.end_reason(),
        Some(EndReason::Cancelled(ContextError::Cancelled))
    );
    assert!(full.next().await.is_none(), "an abort drops what was held");
    assert!(topic.is_closed());
    assert!(topic.publish(census.message(2)).await.is_err());
    assert_eq!(census.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_topic_made_inside_a_context_inherits_it() {
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    let topic = ctx.scope(async { Topic::<u8>::new(4) }).await;
    assert!(topic.task_context().is_some());
    let mut sub = topic.subscribe();
    let next = timeout(LONG, sub.next())
        .await
        .expect("the deadline did not end it");
    assert_eq!(next, None);
    assert_eq!(
        sub.end_reason(),
        Some(EndReason::Cancelled(ContextError::DeadlineExceeded))
    );
    assert!(Topic::<u8>::new(1).task_context().is_none());
}

/// Bound to a context with a deadline, a topic waits on the context itself:
/// no timer task is spawned, and the deadline still aborts it on time.
#[tokio::test(start_paused = true)]
async fn a_topic_bound_to_a_deadline_spawns_no_task_and_ends_at_it() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = alive();
    let start = tokio::time::Instant::now();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    let topic = Topic::new(4).context(&ctx);
    let mut sub = topic.subscribe();
    assert_eq!(topic.publish(1_u8).await, Ok(1));
    assert_eq!(alive(), baseline, "binding to a deadline spawned a task");
    assert_eq!(sub.next().await, Some(1));
    let next = timeout(LONG, sub.next())
        .await
        .expect("the deadline did not end it: hung");
    assert_eq!(next, None);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        sub.end_reason(),
        Some(EndReason::Cancelled(ContextError::DeadlineExceeded))
    );
    assert_eq!(topic.publish(2).await, Err(PublishError(2)));
    assert_eq!(alive(), baseline);
}

#[tokio::test]
async fn a_topic_made_in_a_cancelled_context_starts_aborted() {
    let ctx = TaskContext::background();
    ctx.cancel();
    let topic = Topic::new(4).context(&ctx);
    let mut sub = topic.subscribe();
    assert_eq!(topic.publish(1).await, Err(PublishError(1)));
    assert_eq!(sub.next().await, None);
    assert_eq!(topic.subscriber_count(), 0);
}

/// Shutdown's two phases, with what exists today: close on "draining" (the
/// subscriptions drain), then cancel the context (what is left is dropped).
#[tokio::test(start_paused = true)]
async fn close_on_drain_then_cancel_on_abort() {
    let service = TaskContext::background();
    let draining = TaskContext::background();
    let topic = Topic::new(4).context(&service);
    let quick = tokio::spawn(topic.subscribe().collect::<Vec<u32>>());
    let mut slow = topic.subscribe_with(SlowSubscriber::DropOldest);
    tokio::spawn({
        let topic = topic.clone();
        let draining = draining.clone();
        async move {
            draining.cancelled().await;
            topic.close();
        }
    });
    for msg in 0..6 {
        topic.publish(msg).await.unwrap();
    }
    draining.cancel();
    assert_eq!(
        timeout(LONG, quick).await.expect("hung").unwrap(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(slow.next().await, Some(2), "draining keeps what it holds");
    service.cancel();
    assert_eq!(slow.next().await, None, "the abort drops the rest");
}

/// The publisher waits on a subscription that has cached what it holds; each
/// read must wake it, though the subscription is not polled again until the
/// publisher has gone on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_read_wakes_a_publisher_waiting_for_room() {
    let topic = Topic::new(2);
    let mut sub = topic.subscribe();
    let (published, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn(async move {
        for msg in 0..10 {
            topic.publish(msg).await.unwrap();
            published.send(msg).unwrap();
        }
    });
    for msg in 0..2 {
        assert_eq!(progress.recv().await, Some(msg));
    }
    for msg in 0..8 {
        assert_eq!(sub.next().await, Some(msg));
        let next = timeout(LONG, progress.recv()).await;
        assert_eq!(
            next.expect("the waiting publisher was not woken"),
            Some(msg + 2)
        );
    }
    timeout(LONG, publisher).await.expect("hung").unwrap();
}

/// Tiny buffers, several Backpressure subscriptions reading at different
/// paces on two threads, two publishers: nothing is lost and nobody hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_with_tiny_buffers_never_strands_anyone() {
    for capacity in 1..=3 {
        for subscribers in [1, 3, 8] {
            let topic = Topic::new(capacity);
            let readers: Vec<_> = (0..subscribers)
                .map(|r| {
                    let mut sub = topic.subscribe();
                    tokio::spawn(async move {
                        let mut count = 0_u32;
                        while sub.next().await.is_some() {
                            count += 1;
                            if (count + r) % (r + 2) == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        count
                    })
                })
                .collect();
            let publishers: Vec<_> = (0..2)
                .map(|_| {
                    let topic = topic.clone();
                    tokio::spawn(async move {
                        for msg in 0..500 {
                            topic.publish(msg).await.unwrap();
                        }
                    })
                })
                .collect();
            drop(topic);
            join_within(publishers, "a publisher").await;
            for count in join_within(readers, "a reader").await {
                assert_eq!(
                    count, 1_000,
                    "capacity {capacity}, {subscribers} subscribers"
                );
            }
        }
    }
}

#[test]
fn handles_and_futures_cross_threads() {
    fn send_sync<X: Send + Sync>(_: &X) {}
    fn send<X: Send>(_: &X) {}
    let topic = Topic::<String>::new(1);
    let sub = topic.subscribe();
    let publish = topic.publish(String::new());
    send_sync(&topic);
    send_sync(&sub);
    send(&publish);
    send_sync(&sub.with_gaps());
}
