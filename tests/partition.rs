//! `partition`: each item to the lane its key hashes to, with bounded lanes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_conc::fan_out::{Branches, DEFAULT_LANE_CAPACITY, Lane};
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::{
    LONG, LateWake, WakeCounter, assert_a_branch_blocked_on_a_panicking_poll_names_the_message,
    assert_the_source_panic_spreads, consumer, counted, join_within, poll_once, ready_now,
    two_thread_runtime, yield_times,
};

type Item = (u32, usize); // (key, position in the source)

fn key(item: &Item) -> u32 {
    item.0
}

/// Which of `n` lanes `key` goes to, found by asking `partition` itself.
async fn lane_of(key: u32, n: usize) -> usize {
    let lanes = futures::stream::iter([key]).partition(n, |k: &u32| *k);
    let got = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<_>>())).await;
    got.iter().position(|lane| !lane.is_empty()).unwrap()
}

/// One key per lane: `keys[lane]` goes to `lane`.
async fn key_per_lane(n: usize) -> Vec<u32> {
    let mut keys = vec![None; n];
    for key in 0.. {
        let lane = lane_of(key, n).await;
        keys[lane].get_or_insert(key);
        if keys.iter().all(Option::is_some) {
            break;
        }
    }
    keys.into_iter().flatten().collect()
}

#[test]
fn lanes_are_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<Lane<String>>();
}

#[test]
#[should_panic(expected = "`capacity` must be at least 1, got 0")]
fn zero_capacity_panics_naming_capacity() {
    let _ = futures::stream::iter([1_u32]).partition_with(2, 0, |x: &u32| *x);
}

#[test]
#[should_panic(expected = "`n` (the number of branches) must be at least 1")]
fn zero_lanes_panics_naming_n() {
    let _ = futures::stream::iter([1_u32]).partition(0, |x: &u32| *x);
}

#[tokio::test]
async fn equal_keys_share_a_lane_in_order() {
    let items: Vec<Item> = (0..60).map(|i| ((i % 7) as u32, i)).collect();
    let lanes = futures::stream::iter(items).partition(3, key);
    let got = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<_>>())).await;
    for k in 0..7 {
        let holders: Vec<_> = got
            .iter()
            .filter(|lane| lane.iter().any(|i| i.0 == k))
            .collect();
        assert_eq!(holders.len(), 1, "key {k} split over lanes");
        let positions: Vec<usize> = holders[0]
            .iter()
            .filter(|i| i.0 == k)
            .map(|i| i.1)
            .collect();
        assert_eq!(
            positions,
            (0..60).filter(|i| i % 7 == k as usize).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn lanes_hold_the_default_capacity_at_most() {
    let keys = key_per_lane(2).await;
    let items: Vec<Item> = (0..100)
        .map(|i| (keys[0], i))
        .chain([(keys[1], 100)])
        .collect();
    let (source, produced) = counted(items);
    let mut lanes = source.partition(2, key);
    assert_eq!(ready_now(&mut lanes[1]).await, None);
    assert_eq!(lanes[0].len(), DEFAULT_LANE_CAPACITY);
    assert_eq!(produced.load(Ordering::SeqCst), DEFAULT_LANE_CAPACITY + 1);
}

/// An item for a full lane is held and the source waits: the other lane
/// cannot get past it until the full lane takes an item.
#[tokio::test(start_paused = true)]
async fn a_full_lane_applies_backpressure() {
    let keys = key_per_lane(2).await;
    let (full, free) = (keys[0], keys[1]);
    let items = vec![(full, 0), (full, 1), (full, 2), (free, 3), (free, 4)];
    let (source, produced) = counted(items);
    let mut lanes = source.partition_with(2, 2, key);
    let mut free_lane = lanes.pop().unwrap();
    let mut full_lane = lanes.pop().unwrap();

    let waiting = tokio::spawn(async move { (free_lane.next().await, free_lane) });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        !waiting.is_finished(),
        "the free lane must wait behind the held item"
    );
    assert_eq!(
        produced.load(Ordering::SeqCst),
        3,
        "two buffered and one held"
    );
    assert_eq!(full_lane.len(), 2);

    assert_eq!(full_lane.next().await, Some((full, 0)));
    let (got, mut free_lane) = timeout(LONG, waiting).await.expect("never woken").unwrap();
    assert_eq!(got, Some((free, 3)));
    assert_eq!(free_lane.next().await, Some((free, 4)));
    assert_eq!(full_lane.collect::<Vec<_>>().await, [(full, 1), (full, 2)]);
    assert_eq!(free_lane.next().await, None);
}

/// The full lane takes its items from a batch, without the lock: each one it
/// takes must still let the held item in, and wake the lane blocked behind it.
#[tokio::test(start_paused = true)]
async fn a_lane_blocked_behind_a_full_one_wakes_as_it_takes_items() {
    let keys = key_per_lane(2).await;
    let (full, free) = (keys[0], keys[1]);
    let items = vec![(full, 0), (full, 1), (full, 2), (full, 3), (free, 4)];
    let mut lanes = futures::stream::iter(items).partition_with(2, 2, key);
    let mut free_lane = lanes.pop().unwrap();
    let mut full_lane = lanes.pop().unwrap();
    let waiting = tokio::spawn(async move { (free_lane.next().await, free_lane) });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(full_lane.next().await, Some((full, 0))); // takes [0, 1] as a batch
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        !waiting.is_finished(),
        "(full, 3) is now held: still blocked"
    );
    assert_eq!(full_lane.next().await, Some((full, 1))); // from the batch
    let (got, _free_lane) = timeout(LONG, waiting).await.expect("never woken").unwrap();
    assert_eq!(got, Some((free, 4)));
    assert_eq!(full_lane.collect::<Vec<_>>().await, [(full, 2), (full, 3)]);
}

/// Items for a dropped lane are skipped and counted — the ones it held, the one
/// held for it, and the ones routed to it later — and the others go on.
#[tokio::test(start_paused = true)]
async fn a_dropped_lane_skips_and_counts_its_items() {
    let keys = key_per_lane(2).await;
    let (gone, kept) = (keys[0], keys[1]);
    let items = vec![
        (gone, 0),
        (gone, 1),
        (gone, 2),
        (kept, 3),
        (gone, 4),
        (kept, 5),
    ];
    let mut lanes = futures::stream::iter(items).partition_with(2, 2, key);
    let mut kept_lane = lanes.pop().unwrap();
    let gone_lane = lanes.pop().unwrap();

    let waiting = tokio::spawn(async move { (kept_lane.next().await, kept_lane) });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiting.is_finished());
    drop(gone_lane); // held two, and (gone, 2) was held for it
    let (got, kept_lane) = timeout(LONG, waiting).await.expect("never woken").unwrap();
    assert_eq!(got, Some((kept, 3)));
    let mut kept_lane = kept_lane;
    assert_eq!(kept_lane.by_ref().collect::<Vec<_>>().await, [(kept, 5)]);
    assert_eq!(kept_lane.skipped(), 4);
}

#[tokio::test(start_paused = true)]
async fn lanes_parked_on_a_pending_source_all_wake_when_it_yields_and_ends() {
    let keys = key_per_lane(3).await;
    let (tx, rx) = mpsc::channel(8);
    let tasks: Vec<_> = ReceiverStream::new(rx)
        .partition(3, key)
        .into_iter()
        .map(|lane| tokio::spawn(lane.collect::<Vec<_>>()))
        .collect();
    yield_times(10).await;
    for (position, &k) in keys.iter().enumerate() {
        tx.send((k, position)).await.unwrap();
    }
    yield_times(10).await;
    drop(tx);
    for (lane, task) in tasks.into_iter().enumerate() {
        let got = timeout(LONG, task)
            .await
            .expect("a parked lane was never woken");
        assert_eq!(got.unwrap(), [(keys[lane], lane)]);
    }
}

/// Regression (found with `fan_out`'s, chaos seed 1795748875737309819): a
/// lane parked on a pending source was stranded when another lane then
/// pulled an item of its own that had come ready without a wake-up yet (a
/// pool batches its wake-ups) and stopped there: the source owes a wake-up
/// only to its last poll, which had returned that item. The waiting lane's
/// items sat in the source while its consumer waited.
#[tokio::test]
async fn waiting_lane_stranded_when_another_pulls_an_item_of_its_own() {
    let keys = key_per_lane(2).await;
    let source = LateWake::new();
    let mut lanes = source.clone().partition_with(2, 4, |k: &u32| *k);
    let (mut taker, mut waiter) = (lanes.remove(0), lanes.remove(0));
    let waiter_woken = WakeCounter::new();
    assert!(poll_once(&mut waiter, &waiter_woken).is_pending());
    source.push(keys[0]);
    source.push(keys[1]);
    assert_eq!(
        poll_once(&mut taker, &WakeCounter::new()),
        Poll::Ready(Some(keys[0]))
    );
    drop(taker);
    source.wake_if_owed(); // owes nothing: its last poll returned an item
    assert!(waiter_woken.count() > 0, "the waiting lane was stranded");
    assert_eq!(
        poll_once(&mut waiter, &waiter_woken),
        Poll::Ready(Some(keys[1]))
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_every_lane_and_drops_what_they_hold() {
    let keys = key_per_lane(2).await;
    let ctx = TaskContext::background();
    let (tx, rx) = mpsc::channel(8);
    let mut lanes = ReceiverStream::new(rx).partition_with(Branches::new(2).context(&ctx), 2, key);
    let mut second = lanes.pop().unwrap();
    let first = lanes.pop().unwrap();
    for i in 0..3 {
        tx.send((keys[0], i)).await.unwrap();
    }
    let parked = tokio::spawn(async move { second.next().await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(first.len(), 2);
    ctx.cancel();
    assert_eq!(
        timeout(LONG, parked)
            .await
            .expect("cancel did not wake")
            .unwrap(),
        None
    );
    assert_eq!(
        first.collect::<Vec<_>>().await,
        [],
        "buffered items are dropped on cancel"
    );
    assert!(tx.is_closed(), "the source is dropped on cancel");
}

#[tokio::test]
async fn a_panicking_source_panics_the_branch_polling_it_and_then_the_others() {
    let source = futures::stream::poll_fn(|_| -> Poll<Option<u32>> { panic!("source failed") });
    let mut branches = source.partition(2, |x: &u32| *x);
    let second = branches.pop().unwrap();
    let first = branches.pop().unwrap();
    assert_the_source_panic_spreads(first, second, "partition").await;
}

/// Found by the chaos suite: lanes on tasks of their own under a fan-in, a
/// panicking stage upstream; the lane that did not poll the source reached
/// the consumer first, and its panic said only "the source panicked in
/// another branch" — the message of the real panic was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_lane_panic_keeps_the_source_panic_message() {
    let source = futures::stream::iter(0..4_u32).map(|x| {
        assert!(x < 3, "item {x} is poison");
        x
    });
    let mut lanes = source.partition_with(2, 8, |x: &u32| *x);
    let second = lanes.pop().unwrap();
    let first = lanes.pop().unwrap();
    let first = tokio::spawn(first.collect::<Vec<_>>()).await.unwrap_err();
    let first = first.into_panic();
    assert_eq!(first.downcast_ref::<String>().unwrap(), "item 3 is poison");
    let second = tokio::spawn(second.collect::<Vec<_>>()).await.unwrap_err();
    let second = second.into_panic();
    let second = second.downcast_ref::<String>().unwrap();
    assert_eq!(
        second,
        "partition: the source panicked in another branch: item 3 is poison"
    );
}

/// The source's panic message survives a branch that was blocked on the
/// lock while another branch's poll of the source panicked (see the helper).
#[test]
fn blocked_branch_lost_the_source_panic_message_while_the_poll_unwound() {
    assert_a_branch_blocked_on_a_panicking_poll_names_the_message("partition", |source| {
        let mut branches = source.partition_with(2, 4, |x: &u32| *x);
        let second = branches.pop().unwrap();
        (branches.pop().unwrap(), second)
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every item reaches one lane; all items of a key reach the same lane, in
    /// source order; lanes never hold more than `capacity`; and the source never
    /// runs more than the lanes (plus one held item) ahead of the consumers.
    #[test]
    fn equal_keys_go_to_one_lane_in_order_within_bounded_lanes(
        keys in proptest::collection::vec(0_u32..8, 0..200),
        capacity in 1_usize..6,
        consumers in proptest::collection::vec(consumer(), 1..5),
    ) {
        let n = consumers.len();
        let items: Vec<Item> = keys.iter().copied().zip(0..).collect();
        let consumed = Arc::new(AtomicUsize::new(0));
        let overrun = Arc::new(AtomicBool::new(false));
        let (watch, flag) = (consumed.clone(), overrun.clone());
        let source = futures::stream::iter(items.clone()).inspect(move |&(_, position)| {
            // Each consumer counts an item just after receiving it: at most n behind.
            if position > watch.load(Ordering::SeqCst) + n + n * capacity {
                flag.store(true, Ordering::SeqCst);
            }
        });
        let runtime = two_thread_runtime();
        let per_lane: Vec<Vec<Item>> = runtime.block_on(async {
            let tasks: Vec<_> = source
                .partition_with(n, capacity, key)
                .into_iter()
                .zip(consumers)
                .map(|(mut lane, consumer)| {
                    let consumed = consumed.clone();
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        while let Some(item) = lane.next().await {
                            consumed.fetch_add(1, Ordering::SeqCst);
                            assert!(lane.len() <= capacity);
                            got.push(item);
                            consumer.pause(got.len()).await;
                        }
                        got
                    })
                })
                .collect();
            join_within(tasks).await
        });
        prop_assert!(!overrun.load(Ordering::SeqCst), "the source ran ahead of the lanes");
        for k in 0..8 {
            let holders = per_lane.iter().filter(|lane| lane.iter().any(|i| i.0 == k)).count();
            prop_assert!(holders <= 1, "key {} split over lanes", k);
        }
        for lane in &per_lane {
            prop_assert!(lane.windows(2).all(|w| w[0].1 < w[1].1), "out of order: {:?}", lane);
        }
        let mut all: Vec<Item> = per_lane.into_iter().flatten().collect();
        all.sort_by_key(|i| i.1);
        prop_assert_eq!(all, items);
    }
}
