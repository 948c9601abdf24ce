//! Fan-in's guarantees: nothing lost or duplicated, order kept per input,
//! fairness, growth while running, and polling only the inputs that woke.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_conc::fan_in::FanIn;
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

/// An input that is pending before some items (waking itself at once), so
/// inputs interleave in every possible way.
struct Hesitant {
    items: std::vec::IntoIter<(usize, usize)>,
    pauses: std::vec::IntoIter<bool>,
}

impl Stream for Hesitant {
    type Item = (usize, usize);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pauses.next().unwrap_or(false) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.items.next())
    }
}

/// Checks that `out` holds every `(input, seq)` of `lens` exactly once, with
/// each input's items in order.
fn assert_permutation_in_order(out: &[(usize, usize)], lens: &[usize]) {
    let mut next = vec![0; lens.len()];
    for &(input, seq) in out {
        assert_eq!(seq, next[input], "input {input} out of order or duplicated");
        next[input] += 1;
    }
    assert_eq!(next, lens, "every item of every input, exactly once");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn output_is_every_item_once_in_per_input_order(
        inputs in proptest::collection::vec(
            proptest::collection::vec(any::<bool>(), 0..40), 0..12),
    ) {
        let lens: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let streams = inputs.iter().enumerate().map(|(input, pauses)| Hesitant {
            items: (0..pauses.len()).map(|seq| (input, seq)).collect::<Vec<_>>().into_iter(),
            pauses: pauses.clone().into_iter(),
        });
        let out: Vec<(usize, usize)> =
            futures::executor::block_on(fan_in(streams).collect());
        assert_permutation_in_order(&out, &lens);
    }

    #[test]
    fn channels_fed_by_tasks_lose_and_duplicate_nothing(
        lens in proptest::collection::vec(0_usize..200, 1..10),
        capacity in 1_usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let mut merged = FanIn::new();
            for (input, &len) in lens.iter().enumerate() {
                let (tx, rx) = mpsc::channel(capacity);
                tokio::spawn(async move {
                    for seq in 0..len {
                        tx.send((input, seq)).await.unwrap();
                    }
                });
                merged.push(ReceiverStream::new(rx));
            }
            merged.collect::<Vec<_>>().await
        });
        assert_permutation_in_order(&out, &lens);
    }
}

#[tokio::test]
async fn ready_inputs_take_turns() {
    let endless = stream::repeat(0_u8).boxed();
    let finite = stream::iter(vec![1_u8; 100]).boxed();
    let mut merged = fan_in([endless, finite]);
    let mut share = [0_usize; 2];
    for _ in 0..150 {
        share[merged.next().await.unwrap() as usize] += 1;
    }
    // Strict alternation while both are ready.
    assert_eq!(share, [75, 75]);
}

#[tokio::test]
async fn an_endless_input_cannot_starve_a_producer_task_on_one_thread() {
    // `#[tokio::test]` runs on one thread: the producer below only runs when
    // the consumer yields, which fan-in's use of the task budget forces.
    let (tx, rx) = mpsc::channel(1);
    let producer = tokio::spawn(async move {
        for i in 0..50_u32 {
            tx.send(i).await.unwrap();
        }
    });
    let endless = stream::repeat(u32::MAX).boxed();
    let mut merged = fan_in([endless, ReceiverStream::new(rx).boxed()]);
    let mut slow = Vec::new();
    let mut taken = 0;
    while slow.len() < 50 {
        let item = merged.next().await.unwrap();
        taken += 1;
        if item != u32::MAX {
            slow.push(item);
        }
        // Each of its items needs one yield of the consumer (one every 512
        // items here): a bound that only starvation breaks.
        assert!(
            taken < 100_000,
            "the slow input got only {} items",
            slow.len()
        );
    }
    assert_eq!(slow, (0..50).collect::<Vec<_>>());
    producer.await.unwrap();
}

#[tokio::test]
async fn an_endless_fan_in_lets_other_tasks_run() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let mut merged = fan_in([stream::repeat(1_u8), stream::repeat(2_u8)]);
    let mut taken = 0;
    while !ran.load(Ordering::SeqCst) {
        merged.next().await.unwrap();
        taken += 1;
        assert!(taken < 100_000, "fan_in never yielded to the scheduler");
    }
}

#[tokio::test]
async fn ends_when_every_input_ends() {
    let merged = fan_in([stream::iter(0..3), stream::iter(3..4), stream::iter(4..4)]);
    let mut all: Vec<i32> = merged.collect().await;
    all.sort();
    assert_eq!(all, [0, 1, 2, 3]);

    let empty: FanIn<stream::Iter<std::ops::Range<i32>>> = fan_in([]);
    assert_eq!(empty.count().await, 0);
}

#[tokio::test]
async fn push_after_the_end_starts_it_again() {
    let mut merged = fan_in([stream::iter(0..1)]);
    assert_eq!(merged.next().await, Some(0));
    assert_eq!(merged.next().await, None);
    merged.push(stream::iter(5..6));
    assert_eq!(merged.next().await, Some(5));
    assert_eq!(merged.next().await, None);
}

#[tokio::test]
async fn a_handle_push_wakes_a_parked_consumer() {
    // One input that stays pending: the consumer parks.
    let (_idle_tx, idle_rx) = mpsc::channel::<u32>(1);
    let mut merged = fan_in([ReceiverStream::new(idle_rx)]);
    let handle = merged.handle();
    let pusher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (tx, rx) = mpsc::channel(4);
        tx.send(7).await.unwrap();
        tx.send(8).await.unwrap();
        handle.push(ReceiverStream::new(rx)).unwrap();
    });
    let got = timeout(Duration::from_secs(5), async {
        vec![merged.next().await, merged.next().await]
    })
    .await
    .expect("the push woke the consumer");
    assert_eq!(got, [Some(7), Some(8)]);
    pusher.await.unwrap();
}

#[tokio::test]
async fn a_live_handle_keeps_the_stream_open_until_dropped() {
    let merged: FanIn<stream::Iter<std::ops::Range<u32>>> = FanIn::new();
    let handle = merged.handle();
    let second = handle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        second.push(stream::iter(0..2)).unwrap();
        drop(second);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(handle);
    });
    let all = timeout(Duration::from_secs(5), merged.collect::<Vec<_>>())
        .await
        .expect("ends once the last handle is gone");
    assert_eq!(all, [0, 1]);
}

#[test]
fn a_handle_gives_the_stream_back_once_the_fan_in_is_gone() {
    let merged: FanIn<stream::Iter<std::ops::Range<u32>>> = FanIn::new();
    let handle = merged.handle();
    drop(merged);
    assert!(handle.push(stream::iter(0..1)).is_err());
}

/// Counts how often each input is polled.
struct Counted<S> {
    inner: S,
    polls: Arc<AtomicUsize>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_next_unpin(cx)
    }
}

#[tokio::test]
async fn a_wake_up_polls_only_the_input_that_woke() {
    const INPUTS: usize = 64;
    let mut senders = Vec::new();
    let mut counters = Vec::new();
    let mut merged = FanIn::new();
    for _ in 0..INPUTS {
        let (tx, rx) = mpsc::channel::<usize>(4);
        let polls = Arc::new(AtomicUsize::new(0));
        merged.push(Counted {
            inner: ReceiverStream::new(rx),
            polls: Arc::clone(&polls),
        });
        senders.push(tx);
        counters.push(polls);
    }
    let total = |c: &[Arc<AtomicUsize>]| c.iter().map(|p| p.load(Ordering::SeqCst)).sum::<usize>();
    // First poll: every input once; all pending.
    assert!(futures::poll!(merged.next()).is_pending());
    assert_eq!(total(&counters), INPUTS);

    for round in 0..10 {
        let input = (round * 7) % INPUTS;
        let before: Vec<usize> = counters.iter().map(|p| p.load(Ordering::SeqCst)).collect();
        senders[input].send(round).await.unwrap();
        assert_eq!(merged.next().await, Some(round));
        assert!(futures::poll!(merged.next()).is_pending());
        for (i, polls) in counters.iter().enumerate() {
            let delta = polls.load(Ordering::SeqCst) - before[i];
            if i == input {
                assert!(delta <= 2, "input {i} polled {delta} times for one item");
            } else {
                assert_eq!(delta, 0, "input {i} polled though it never woke");
            }
        }
    }
}

#[tokio::test]
async fn dropping_the_fan_in_drops_its_inputs() {
    let (tx, rx) = mpsc::channel::<u8>(1);
    let merged = fan_in([ReceiverStream::new(rx)]);
    assert!(!tx.is_closed());
    drop(merged);
    assert!(tx.is_closed());
}

#[test]
fn fan_in_and_its_handle_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FanIn<ReceiverStream<u8>>>();
    assert_send_sync::<tokio_conc::fan_in::FanInHandle<ReceiverStream<u8>>>();
}

/// Always pending, waking itself at once — as a Tokio resource does when the
/// task's budget is spent. Fails the test if polled too often without a break.
struct SelfWaking {
    polls: usize,
}

impl Stream for SelfWaking {
    type Item = u8;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u8>> {
        self.polls += 1;
        assert!(self.polls < 1000, "fan_in kept polling a self-waking input");
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn a_self_waking_input_makes_fan_in_yield_not_spin() {
    let mut merged = fan_in([SelfWaking { polls: 0 }, SelfWaking { polls: 0 }]);
    futures::executor::block_on(async {
        for _ in 0..10 {
            assert!(futures::poll!(merged.next()).is_pending());
        }
    });
}
