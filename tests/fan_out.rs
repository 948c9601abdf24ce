//! `fan_out`: each item to exactly one branch, the first that asks.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_conc::fan_out::{Branch, Branches};
use tokio_conc::prelude::*;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::{
    LONG, LateWake, WakeCounter, assert_a_branch_blocked_on_a_panicking_poll_names_the_message,
    assert_the_source_panic_spreads, join_within, poll_once, two_thread_runtime, yield_times,
};

/// A source that counts the items it produced and records being dropped.
struct Tracked<S> {
    inner: S,
    produced: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

fn tracked<S: Stream>(inner: S) -> (Tracked<S>, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let produced = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let source = Tracked {
        inner,
        produced: produced.clone(),
        dropped: dropped.clone(),
    };
    (source, produced, dropped)
}

impl<S: Stream + Unpin> Stream for Tracked<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = polled {
            self.produced.fetch_add(1, Ordering::SeqCst);
        }
        polled
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn branches_are_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<Branch<String>>();
    assert_send_static::<Vec<Branch<Vec<u8>>>>();
}

#[test]
#[should_panic(expected = "`n` (the number of branches) must be at least 1")]
fn zero_branches_panics_naming_n() {
    let _ = futures::stream::iter([1]).fan_out(0);
}

#[tokio::test]
async fn reads_the_source_only_when_a_branch_asks() {
    let (source, produced, _) = tracked(futures::stream::iter(0..10));
    let mut branches = source.fan_out(3);
    assert_eq!(produced.load(Ordering::SeqCst), 0);
    assert_eq!(branches[1].next().await, Some(0));
    assert_eq!(produced.load(Ordering::SeqCst), 1);
    assert_eq!(branches[0].next().await, Some(1));
    assert_eq!(branches[2].next().await, Some(2));
    assert_eq!(produced.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_dropped_branch_takes_no_item_with_it() {
    let mut branches = futures::stream::iter(0..10).fan_out(2);
    let mut first = branches.remove(0);
    let second = branches.remove(0);
    assert_eq!(first.next().await, Some(0));
    assert_eq!(first.next().await, Some(1));
    drop(first);
    assert_eq!(
        second.collect::<Vec<_>>().await,
        (2..10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn all_branches_end_when_the_source_ends_and_stay_ended() {
    let mut branches = futures::stream::iter([7]).fan_out(3);
    assert_eq!(branches[2].next().await, Some(7));
    for branch in &mut branches {
        assert_eq!(branch.next().await, None);
        assert!(branch.is_terminated());
        assert_eq!(branch.next().await, None);
    }
}

#[tokio::test]
async fn the_source_is_dropped_with_the_last_branch() {
    let (source, _, dropped) = tracked(futures::stream::pending::<u8>());
    let mut branches = source.fan_out(2);
    let last = branches.pop().unwrap();
    drop(branches);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(last);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn the_source_is_dropped_as_soon_as_it_ends() {
    let (source, _, dropped) = tracked(futures::stream::iter([1]));
    let mut branches = source.fan_out(2);
    assert_eq!(branches[0].next().await, Some(1));
    assert_eq!(branches[0].next().await, None);
    assert!(
        dropped.load(Ordering::SeqCst),
        "ended source still held by the branches"
    );
}

/// Branches parked while the source is pending must all wake when it yields.
/// A source keeps only the last waker it saw: polling it with each branch's own
/// waker would wake one branch and leave the others parked for ever.
#[tokio::test(start_paused = true)]
async fn branches_parked_on_a_pending_source_all_wake_when_it_yields() {
    let (tx, rx) = mpsc::channel(8);
    let tasks: Vec<_> = ReceiverStream::new(rx)
        .fan_out(4)
        .into_iter()
        .map(|mut branch| tokio::spawn(async move { branch.next().await }))
        .collect();
    yield_times(10).await; // every branch polls and parks
    for item in 0..4 {
        tx.send(item).await.unwrap();
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(
            timeout(LONG, task)
                .await
                .expect("a parked branch was never woken")
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(got, [Some(0), Some(1), Some(2), Some(3)]);
}

#[tokio::test(start_paused = true)]
async fn branches_parked_on_a_pending_source_all_wake_when_it_ends() {
    let (tx, rx) = mpsc::channel::<u8>(8);
    let tasks: Vec<_> = ReceiverStream::new(rx)
        .fan_out(4)
        .into_iter()
        .map(|mut branch| tokio::spawn(async move { branch.next().await }))
        .collect();
    yield_times(10).await;
    drop(tx);
    for task in tasks {
        let got = timeout(LONG, task)
            .await
            .expect("a parked branch was never woken");
        assert_eq!(got.unwrap(), None);
    }
}

/// The source sees one waker: if it were the waker of the branch that polled
/// last, dropping that branch would strand every other parked branch.
#[tokio::test(start_paused = true)]
async fn dropping_the_last_parked_branch_strands_no_other() {
    let (tx, rx) = mpsc::channel(8);
    let mut branches = ReceiverStream::new(rx).fan_out(2);
    let mut last = branches.pop().unwrap();
    let mut first = branches.pop().unwrap();
    let first = tokio::spawn(async move { first.next().await });
    yield_times(5).await;
    let last = tokio::spawn(async move { last.next().await });
    yield_times(5).await;
    last.abort();
    assert!(last.await.unwrap_err().is_cancelled());
    tx.send(42).await.unwrap();
    let got = timeout(LONG, first)
        .await
        .expect("the remaining branch was stranded");
    assert_eq!(got.unwrap(), Some(42));
}

/// Regression (chaos seed 1795748875737309819 hung: `par_map` feeding
/// `fan_out(2)`, one branch dropped after 8 items). A branch parked on a
/// pending source was stranded when another branch then took an item that
/// had come ready without a wake-up yet (a pool batches its wake-ups) and
/// was dropped: the source owes a wake-up only to its last poll, and that
/// one had returned the item.
#[tokio::test]
async fn waiting_branch_stranded_when_another_takes_the_item_and_is_dropped() {
    let source = LateWake::new();
    let mut branches = source.clone().fan_out(2);
    let (mut taker, mut waiter) = (branches.remove(0), branches.remove(0));
    let (taker_woken, waiter_woken) = (WakeCounter::new(), WakeCounter::new());
    assert!(poll_once(&mut waiter, &waiter_woken).is_pending());
    source.push(1);
    source.push(2);
    assert_eq!(poll_once(&mut taker, &taker_woken), Poll::Ready(Some(1)));
    drop(taker);
    source.wake_if_owed(); // owes nothing: its last poll returned an item
    assert!(waiter_woken.count() > 0, "the waiting branch was stranded");
    assert_eq!(poll_once(&mut waiter, &waiter_woken), Poll::Ready(Some(2)));
}

/// The same without the drop: a branch that took an item and is not polled
/// again for a while (its consumer is busy) holds up no branch that asked
/// before it — as with goroutines sharing a channel.
#[tokio::test]
async fn waiting_branch_stranded_behind_an_idle_branch_that_took_an_item() {
    let source = LateWake::new();
    let mut branches = source.clone().fan_out(3);
    let mut taker = branches.remove(0);
    let waiters: Vec<_> = branches
        .into_iter()
        .map(|mut waiter| {
            let woken = WakeCounter::new();
            assert!(poll_once(&mut waiter, &woken).is_pending());
            (waiter, woken)
        })
        .collect();
    source.push(1);
    source.push(2);
    assert_eq!(
        poll_once(&mut taker, &WakeCounter::new()),
        Poll::Ready(Some(1))
    );
    source.wake_if_owed();
    for (_, woken) in &waiters {
        assert!(woken.count() > 0, "a waiting branch was stranded");
    }
    let mut got = Vec::new();
    for (mut waiter, woken) in waiters {
        if let Poll::Ready(Some(item)) = poll_once(&mut waiter, &woken) {
            got.push(item);
        }
    }
    assert_eq!(got, [2]);
    drop(taker);
}

/// The chaos plan that found the defect above, with a real pool: its
/// results come ready before their wake-up, and one branch is dropped
/// part-way. Every item still comes out of the other branch.
#[test]
fn a_pool_feeding_fan_out_loses_nothing_when_a_branch_is_dropped_part_way() {
    for round in 0..100 {
        let runtime = two_thread_runtime();
        let got = runtime.block_on(async {
            let items = futures::stream::iter(0..51_u64)
                .par_map(Workers::new(4).buffer(1), |x| async move {
                    if x % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    x
                })
                .fan_out(2)
                .into_iter()
                .enumerate()
                .map(|(i, branch)| {
                    if i == 0 {
                        branch.take(8).boxed()
                    } else {
                        branch.boxed()
                    }
                });
            timeout(LONG, fan_in(items).collect::<Vec<_>>()).await
        });
        let mut got = got.unwrap_or_else(|_| panic!("round {round} hung"));
        got.sort_unstable();
        assert_eq!(got, (0..51).collect::<Vec<_>>(), "round {round}");
    }
}

/// A branch that asks while another branch is inside the source's poll parks,
/// and must be woken when that branch lets go — even if that branch never
/// polls again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_finds_the_source_busy_is_woken_when_it_is_free() {
    let (entered_tx, entered_rx) = std_mpsc::channel::<()>();
    let (gate_tx, gate_rx) = std_mpsc::channel::<()>();
    let gate = Mutex::new(Some((entered_tx, gate_rx)));
    let mut next = 0_u32;
    let source = futures::stream::poll_fn(move |_| {
        if let Some((entered, gate)) = gate.lock().unwrap().take() {
            entered.send(()).unwrap();
            gate.recv().unwrap(); // holds the source until the test opens the gate
        }
        next += 1;
        Poll::Ready(Some(next))
    });
    let mut branches = source.fan_out(2);
    let mut busy = branches.remove(0);
    let mut waiting = branches.remove(0);

    let holder = tokio::spawn(async move {
        let item = busy.next().await;
        (item, busy) // never polled again
    });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();

    let woken = WakeCounter::new();
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    assert_eq!(
        waiting.poll_next_unpin(&mut cx),
        Poll::Pending,
        "the source is busy"
    );

    gate_tx.send(()).unwrap();
    let (first, _busy) = holder.await.unwrap();
    assert_eq!(first, Some(1));
    timeout(LONG, async {
        while woken.count() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the parked branch was not woken when the source became free");
    assert_eq!(waiting.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_context_ends_parked_and_running_branches() {
    let ctx = TaskContext::background();
    let (tx, rx) = mpsc::channel::<u32>(8);
    let mut branches = ReceiverStream::new(rx).fan_out(Branches::new(3).context(&ctx));
    let mut active = branches.pop().unwrap();
    tx.send(1).await.unwrap();
    assert_eq!(active.next().await, Some(1));
    let parked: Vec<_> = branches
        .into_iter()
        .map(|mut branch| tokio::spawn(async move { branch.next().await }))
        .collect();
    yield_times(10).await;
    tx.send(2).await.unwrap(); // would be delivered, were it not for the cancel
    ctx.cancel();
    assert_eq!(active.next().await, None);
    for task in parked {
        let got = timeout(LONG, task)
            .await
            .expect("cancel did not wake a branch");
        assert_eq!(got.unwrap(), None);
    }
    assert!(tx.is_closed(), "the source is dropped on cancel");
}

#[tokio::test(start_paused = true)]
async fn a_parked_branch_ends_when_the_context_is_cancelled() {
    let ctx = TaskContext::background();
    let mut branches = futures::stream::pending::<u32>().fan_out(Branches::new(2).context(&ctx));
    let task = tokio::spawn(async move { branches[0].next().await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    ctx.cancel();
    let got = timeout(LONG, task)
        .await
        .expect("cancel did not wake the branch");
    assert_eq!(got.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn branches_end_at_the_context_deadline() {
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(3));
    let branches = futures::stream::pending::<u32>().fan_out(Branches::new(2).context(&ctx));
    let started = tokio::time::Instant::now();
    let ended = futures::future::join_all(branches.into_iter().map(|b| b.collect::<Vec<_>>()));
    assert_eq!(timeout(LONG, ended).await.unwrap(), vec![vec![]; 2]);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test]
async fn a_panicking_source_panics_its_branch_and_then_the_others() {
    let mut polls = 0;
    let source = futures::stream::poll_fn(move |_| {
        polls += 1;
        assert!(polls < 2, "source failed");
        Poll::Ready(Some(polls))
    });
    let mut branches = source.fan_out(2);
    assert_eq!(branches[0].next().await, Some(1));
    let second = branches.pop().unwrap();
    let first = branches.pop().unwrap();
    assert_the_source_panic_spreads(first, second, "fan_out").await;
}

/// Nothing is spawned: the branches themselves poll the source, so no task
/// can outlive them.
#[tokio::test]
async fn fan_out_spawns_no_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (tx, rx) = mpsc::channel::<u32>(4);
    let mut branches = ReceiverStream::new(rx).fan_out(4);
    tx.send(1).await.unwrap();
    assert_eq!(branches[3].next().await, Some(1));
    assert_eq!(metrics.num_alive_tasks(), 0);
    drop(branches);
    assert!(tx.is_closed(), "the source went with the branches");
}

/// Many rounds of parking and waking across two threads: a lost wake-up hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wake_up_is_lost_under_contention() {
    for round in 0..20_u32 {
        let (tx, rx) = mpsc::channel::<u32>(2);
        let consumers: Vec<_> = ReceiverStream::new(rx)
            .fan_out(8)
            .into_iter()
            .map(|b| tokio::spawn(b.collect::<Vec<_>>()))
            .collect();
        let producer = tokio::spawn(async move {
            for i in 0..500 {
                tx.send(i).await.unwrap();
                if i % (round + 3) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut all = Vec::new();
        for consumer in consumers {
            let got = timeout(LONG, consumer)
                .await
                .expect("lost wake-up")
                .unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            all.extend(got);
        }
        producer.await.unwrap();
        all.sort();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }
}

/// Branches contending for an always-ready source park on each other and must
/// be woken when the holder lets go: a lost wake-up hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wake_up_is_lost_when_branches_contend_for_a_ready_source() {
    for round in 0..200_u64 {
        let n = [2, 3, 8][round as usize % 3];
        let consumers: Vec<_> = futures::stream::iter(0..5_000_u64)
            .fan_out(n)
            .into_iter()
            .map(|b| tokio::spawn(b.fold(0, |sum, x| async move { sum + x })))
            .collect();
        let mut total = 0;
        for consumer in consumers {
            total += timeout(LONG, consumer)
                .await
                .expect("lost wake-up")
                .unwrap();
        }
        assert_eq!(total, 5_000 * 4_999 / 2);
    }
}

/// How a consumer task treats its branch: how many `yield_now`s it makes
/// between items, and whether it quits (drops the branch) after some items.
#[derive(Clone, Debug)]
struct Consumer {
    pace: Vec<u8>,
    quit_after: Option<usize>,
}

fn consumer() -> impl Strategy<Value = Consumer> {
    (
        proptest::collection::vec(0_u8..4, 1..8),
        proptest::option::weighted(0.3, 0_usize..20),
    )
        .prop_map(|(pace, quit_after)| Consumer { pace, quit_after })
}

async fn consume<T>(mut branch: impl Stream<Item = T> + Unpin, consumer: Consumer) -> Vec<T> {
    let mut got = Vec::new();
    for round in 0.. {
        if consumer.quit_after == Some(got.len()) {
            break;
        }
        yield_times(consumer.pace[round % consumer.pace.len()].into()).await;
        match branch.next().await {
            Some(item) => got.push(item),
            None => break,
        }
    }
    got
}

/// The source's panic message survives a branch that was blocked on the
/// lock while another branch's poll of the source panicked (see the helper).
#[test]
fn blocked_branch_lost_the_source_panic_message_while_the_poll_unwound() {
    assert_a_branch_blocked_on_a_panicking_poll_names_the_message("fan_out", |source| {
        let mut branches = source.fan_out(2);
        let second = branches.pop().unwrap();
        (branches.pop().unwrap(), second)
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every item reaches exactly one branch, each branch sees its items in
    /// source order, and branches that quit early lose nothing.
    #[test]
    fn each_item_reaches_exactly_one_branch_in_order(
        len in 0_usize..300,
        mut consumers in proptest::collection::vec(consumer(), 1..7),
    ) {
        consumers[0].quit_after = None; // someone must read to the end
        let runtime = two_thread_runtime();
        let per_branch: Vec<Vec<usize>> = runtime.block_on(async {
            let tasks: Vec<_> = futures::stream::iter(0..len)
                .fan_out(consumers.len())
                .into_iter()
                .zip(consumers)
                .map(|(branch, consumer)| tokio::spawn(consume(branch, consumer)))
                .collect();
            join_within(tasks).await
        });
        for got in &per_branch {
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        }
        let mut all: Vec<usize> = per_branch.into_iter().flatten().collect();
        all.sort();
        prop_assert_eq!(all, (0..len).collect::<Vec<_>>());
    }
}
