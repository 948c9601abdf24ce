//! `broadcast`: every item, cloned, to every branch, at the slowest branch's pace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_conc::fan_out::{Branches, BroadcastBranch};
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::{
    LONG, LateWake, WakeCounter, assert_a_branch_blocked_on_a_panicking_poll_names_the_message,
    assert_the_source_panic_spreads, consumer, counted, join_within, poll_once, ready_now,
    two_thread_runtime, yield_times,
};

#[test]
fn branches_are_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<BroadcastBranch<String>>();
}

#[test]
#[should_panic(expected = "`capacity` must be at least 1, got 0")]
fn zero_capacity_panics_naming_capacity() {
    let _ = futures::stream::iter([1]).broadcast(2, 0);
}

#[test]
#[should_panic(expected = "`n` (the number of branches) must be at least 1")]
fn zero_branches_panics_naming_n() {
    let _ = futures::stream::iter([1]).broadcast(0, 4);
}

#[tokio::test]
async fn every_branch_gets_every_item() {
    let branches = futures::stream::iter(0..50).broadcast(3, 4);
    let seen = futures::future::join_all(branches.into_iter().map(|b| b.collect::<Vec<_>>())).await;
    assert_eq!(seen, vec![(0..50).collect::<Vec<_>>(); 3]);
}

/// A branch that never reads holds `capacity` items, and then the source is not
/// polled again: the fast branch waits for it.
#[tokio::test]
async fn the_slowest_branch_applies_backpressure() {
    let (source, produced) = counted(0..100);
    let mut branches = source.broadcast(2, 4);
    let mut slow = branches.pop().unwrap();
    let mut fast = branches.pop().unwrap();
    for expected in 0..4 {
        assert_eq!(fast.next().await, Some(expected));
    }
    assert_eq!(
        ready_now(&mut fast).await,
        None,
        "the slow branch's buffer is full"
    );
    assert_eq!(produced.load(Ordering::SeqCst), 4);
    assert_eq!(slow.len(), 4);

    assert_eq!(slow.next().await, Some(0));
    assert_eq!(ready_now(&mut fast).await, Some(Some(4)), "room again");
    assert!(slow.len() <= 4);
    assert!(produced.load(Ordering::SeqCst) <= 5);
}

/// The fast branch parks on the slow one; the slow one taking a single item
/// (and then nothing more) must wake it.
#[tokio::test(start_paused = true)]
async fn a_branch_parked_on_backpressure_wakes_when_room_frees() {
    let mut branches = futures::stream::iter(0..10).broadcast(2, 2);
    let mut slow = branches.pop().unwrap();
    let mut fast = branches.pop().unwrap();
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let fast = tokio::spawn(async move {
        while let Some(item) = fast.next().await {
            progress_tx.send(item).unwrap();
        }
    });
    for expected in 0..2 {
        assert_eq!(progress.recv().await, Some(expected));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(progress.try_recv().is_err(), "fast must wait for slow");
    assert_eq!(slow.next().await, Some(0));
    let next = timeout(LONG, progress.recv())
        .await
        .expect("fast branch never woken");
    assert_eq!(next, Some(2));
    // Again, with the slow branch taking its item from the batch it already
    // holds (no lock involved).
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(progress.try_recv().is_err(), "fast must wait for slow");
    assert_eq!(slow.next().await, Some(1));
    let next = timeout(LONG, progress.recv())
        .await
        .expect("fast branch never woken");
    assert_eq!(next, Some(3));
    drop(slow);
    timeout(LONG, fast).await.unwrap().unwrap();
    let rest: Vec<_> = std::iter::from_fn(|| progress.try_recv().ok()).collect();
    assert_eq!(rest, (4..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_dropped_branch_stops_counting() {
    let mut branches = futures::stream::iter(0..100).broadcast(3, 2);
    let gone = branches.remove(1);
    assert_eq!(branches[0].next().await, Some(0)); // the gone branch now holds 2
    drop(gone);
    let seen = futures::future::join_all(branches.into_iter().map(|b| b.collect::<Vec<_>>())).await;
    assert_eq!(seen[0], (1..100).collect::<Vec<_>>());
    assert_eq!(seen[1], (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn branches_parked_on_a_pending_source_all_wake_when_it_yields_and_ends() {
    let (tx, rx) = mpsc::channel(8);
    let tasks: Vec<_> = ReceiverStream::new(rx)
        .broadcast(4, 2)
        .into_iter()
        .map(|b| tokio::spawn(b.collect::<Vec<_>>()))
        .collect();
    yield_times(10).await;
    tx.send("hello").await.unwrap();
    yield_times(10).await;
    drop(tx);
    for task in tasks {
        let got = timeout(LONG, task)
            .await
            .expect("a parked branch was never woken");
        assert_eq!(got.unwrap(), ["hello"]);
    }
}

/// `fan_out` and `partition` stranded a branch waiting on the source when
/// another took an item that came ready before its wake-up (chaos seed
/// 1795748875737309819). `broadcast` pulls for every branch, so the waiting
/// one gets the item too and is woken for it: this keeps it so.
#[tokio::test]
async fn a_waiting_branch_gets_an_item_another_pulled_before_its_wake_up() {
    let source = LateWake::new();
    let mut branches = source.clone().broadcast(2, 4);
    let (mut taker, mut waiter) = (branches.remove(0), branches.remove(0));
    let waiter_woken = WakeCounter::new();
    assert!(poll_once(&mut waiter, &waiter_woken).is_pending());
    source.push(1);
    assert_eq!(
        poll_once(&mut taker, &WakeCounter::new()),
        Poll::Ready(Some(1))
    );
    drop(taker);
    source.wake_if_owed();
    assert!(waiter_woken.count() > 0, "the waiting branch was stranded");
    assert_eq!(poll_once(&mut waiter, &waiter_woken), Poll::Ready(Some(1)));
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_every_branch_and_drops_what_they_hold() {
    let ctx = TaskContext::background();
    let (tx, rx) = mpsc::channel(8);
    let mut branches = ReceiverStream::new(rx).broadcast(Branches::new(3).context(&ctx), 4);
    let mut slow = branches.pop().unwrap();
    let mut fast = branches.pop().unwrap();
    let idle = branches.pop().unwrap();
    for item in 0..4 {
        tx.send(item).await.unwrap();
    }
    tx.send(4).await.unwrap();
    for expected in 0..4 {
        assert_eq!(fast.next().await, Some(expected));
    }
    // fast parks: the others are full. idle parks on nothing but the cancel.
    let fast = tokio::spawn(async move { fast.next().await });
    let idle = tokio::spawn(idle.collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(slow.len(), 4);
    ctx.cancel();
    assert_eq!(
        timeout(LONG, fast)
            .await
            .expect("cancel did not wake")
            .unwrap(),
        None
    );
    assert_eq!(
        slow.next().await,
        None,
        "buffered items are dropped on cancel"
    );
    let idle = timeout(LONG, idle)
        .await
        .expect("cancel did not end idle")
        .unwrap();
    assert!(idle.len() <= 4);
    assert!(tx.is_closed(), "the source is dropped on cancel");
}

#[tokio::test]
async fn the_source_is_dropped_with_the_last_branch() {
    let (tx, rx) = mpsc::channel::<u8>(1);
    let branches = ReceiverStream::new(rx).broadcast(2, 1);
    drop(branches);
    assert!(tx.is_closed());
}

#[tokio::test]
async fn a_panicking_source_panics_the_branch_polling_it_and_then_the_others() {
    let source = futures::stream::poll_fn(|_| -> Poll<Option<u32>> { panic!("source failed") });
    let mut branches = source.broadcast(2, 4);
    let second = branches.pop().unwrap();
    let first = branches.pop().unwrap();
    assert_the_source_panic_spreads(first, second, "broadcast").await;
}

/// The source's panic message survives a branch that was blocked on the
/// lock while another branch's poll of the source panicked (see the helper).
#[test]
fn blocked_branch_lost_the_source_panic_message_while_the_poll_unwound() {
    assert_a_branch_blocked_on_a_panicking_poll_names_the_message("broadcast", |source| {
        let mut branches = source.broadcast(2, 4);
        let second = branches.pop().unwrap();
        (branches.pop().unwrap(), second)
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every branch gets the whole sequence, in order, whatever the paces; no
    /// buffer ever holds more than `capacity`; and the source never runs more
    /// than `capacity` items ahead of the slowest branch.
    #[test]
    fn every_branch_gets_the_whole_sequence_within_bounded_buffers(
        len in 0_usize..200,
        capacity in 1_usize..8,
        consumers in proptest::collection::vec(consumer(), 1..6),
    ) {
        let n = consumers.len();
        let consumed: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let overrun = Arc::new(AtomicBool::new(false));
        let (watch, flag) = (consumed.clone(), overrun.clone());
        let source = futures::stream::iter(0..len).inspect(move |&item| {
            // Each consumer records an item just after receiving it, so it lags
            // its branch by at most one.
            let slowest = watch.iter().map(|c| c.load(Ordering::SeqCst)).min().unwrap();
            if item + 1 > slowest + 1 + capacity {
                flag.store(true, Ordering::SeqCst);
            }
        });
        let runtime = two_thread_runtime();
        let per_branch: Vec<Vec<usize>> = runtime.block_on(async {
            let tasks: Vec<_> = source
                .broadcast(n, capacity)
                .into_iter()
                .zip(consumers)
                .enumerate()
                .map(|(index, (mut branch, consumer))| {
                    let consumed = consumed.clone();
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        while let Some(item) = branch.next().await {
                            consumed[index].fetch_add(1, Ordering::SeqCst);
                            assert!(branch.len() <= capacity);
                            got.push(item);
                            consumer.pause(got.len()).await;
                        }
                        got
                    })
                })
                .collect();
            join_within(tasks).await
        });
        prop_assert!(!overrun.load(Ordering::SeqCst), "the source ran ahead of the slowest branch");
        for got in per_branch {
            prop_assert_eq!(got, (0..len).collect::<Vec<_>>());
        }
    }
}
