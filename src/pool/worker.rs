//! One worker of a pool stream operator: takes batches from the
//! [`HandOff`], runs the pool's function on each item, hands the results
//! back in batches. The protocol's invariants are in `hand_off.rs`; this side
//! keeps these:
//!
//! * it checks for a cancel before every call, so none starts after one;
//! * before it awaits a call that returned `Pending` it hands over what it
//!   holds: results, a wake-up it owes, and the unstarted rest of its batch
//!   (on its shelf, taken back when the call is done if no one took it);
//! * it never drops an item it took: after a failure it goes on through its
//!   batch, skipping the items the failure cut, running the others.

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;

use super::hand_off::{HandOff, Hands, Take};
use crate::context::TaskContext;
use crate::internal::sync::Instant;

/// A worker aims to hand its results back about this often: long enough that
/// the per-batch lock and wake-up vanish next to trivial items, short enough
/// that a batch of slow items never holds work another worker could run.
const BATCH_TIME: Duration = Duration::from_micros(40);

/// A wait at least this long counts toward sizing batches: calls that wait
/// this long (I/O, timers) go one per batch, so each worker takes the oldest
/// queued item next. Shorter waits (a yield, even one that queued behind
/// other tasks) do not count, so calls that yield keep batches of many.
const LONG_WAIT: Duration = Duration::from_micros(250);

/// How many scheduler turns a pending call gets to finish (a call that only
/// yields) before its worker wakes a parked consumer for the results it
/// handed over; at most [`BATCH_TIME`] in all.
const SHORT_WAIT_TURNS: u32 = 3;

/// A worker that keeps finding work yields after this many batches.
const YIELD_EVERY: u32 = 32;

/// Runs worker `index` to its end, under `ctx` (current, and cancelling it)
/// if there is one. A panic in the function is caught and reported to the
/// consumer through the hand-off, never lost.
pub(crate) async fn supervise<T, O, F, Fut>(
    shared: Arc<HandOff<T, O>>,
    f: Arc<F>,
    index: usize,
    ctx: Option<TaskContext>,
) where
    F: Fn(T) -> Fut,
    Fut: Future<Output = O>,
{
    let caught = AssertUnwindSafe(run(&shared, &*f, index)).catch_unwind();
    let outcome = match ctx {
        Some(ctx) => match ctx.run(ctx.scope(caught)).await {
            Ok(outcome) => outcome,
            // Cancelled: the consumer sees it too.
            Err(_) => return,
        },
        None => caught.await,
    };
    if let Err(panic) = outcome {
        shared.report_panic(panic);
    }
}

async fn run<T, O, F, Fut>(shared: &HandOff<T, O>, f: &F, index: usize)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = O>,
{
    let mut hands = Hands::new();
    let mut limit = 1;
    let mut failed = false;
    let mut since_yield = 0;
    loop {
        // A failure must reach the consumer at once; so must results when
        // each call is slow enough that the next batch may take long.
        let urgent = std::mem::take(&mut failed) || limit == 1;
        let take = poll_fn(|cx| shared.poll_take(cx, index, &mut hands, urgent, limit));
        let mut owes_wake = match take.await {
            Take::Closed => return,
            Take::Work {
                woke_consumer,
                owes_wake,
            } => {
                // The consumer was just woken into this thread's LIFO slot,
                // which no other thread can steal from: yield so it runs now
                // (and refills the queue) instead of after this whole batch.
                // Also yield now and then so other tasks on this thread run
                // (tokio's own budget yield would park this worker where no
                // other thread can steal it, as `yield_now` does).
                since_yield += 1;
                if woke_consumer || since_yield == YIELD_EVERY {
                    since_yield = 0;
                    yield_stealable().await;
                }
                owes_wake
            }
        };
        // Time spent running calls and in long waits sizes batches.
        let mut busy = Duration::ZERO;
        let mut running_since = Instant::now();
        let mut ran = 0;
        while let Some((seq, item)) = hands.batch.pop_front() {
            if shared.stopped() {
                return;
            }
            if shared.is_cut(seq) {
                continue;
            }
            ran += 1;
            let mut call = std::pin::pin!(f(item));
            let output = match poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                Poll::Ready(output) => output,
                Poll::Pending => {
                    // This call waits: nothing may wait behind it.
                    if shared.must_shelve(&hands, owes_wake) {
                        owes_wake = shared.shelve(index, &mut hands);
                    }
                    let waiting_since = Instant::now();
                    busy += waiting_since - running_since;
                    let output = if owes_wake {
                        // A parked consumer could take results: wake it
                        // unless the call is done within a few scheduler
                        // turns (it only yields).
                        let mut turns = 0;
                        loop {
                            yield_stealable().await;
                            turns += 1;
                            let polled = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                            if let Poll::Ready(output) = polled {
                                break output;
                            }
                            if turns == SHORT_WAIT_TURNS || waiting_since.elapsed() >= BATCH_TIME {
                                shared.wake_consumer();
                                owes_wake = false;
                                break call.await;
                            }
                        }
                    } else {
                        call.await
                    };
                    running_since = Instant::now();
                    let waited = running_since - waiting_since;
                    if waited >= LONG_WAIT {
                        busy += waited;
                    }
                    shared.unshelve(index, &mut hands);
                    output
                }
            };
            if shared.fails(&output) {
                // Later items are cut; earlier ones (ordered) still run.
                shared.fail(seq);
                failed = true;
            }
            hands.out.push((seq, output));
        }
        busy += running_since.elapsed();
        limit = next_limit(busy, ran);
    }
}

/// Yields once, leaving the task where another runtime thread can steal it.
///
/// `tokio::task::yield_now` parks the task in a per-thread deferred list that
/// other threads cannot steal from, so two workers yielding to each other can
/// end up sharing one thread while the other idles. A task that wakes itself
/// during its poll is instead pushed onto the thread's stealable run queue
/// (and an idle thread is notified).
fn yield_stealable() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// How many items the next batch may take, from how long the last `ran`
/// calls took.
fn next_limit(elapsed: Duration, ran: usize) -> usize {
    let per_item = elapsed.as_nanos() / ran.max(1) as u128;
    let fit = BATCH_TIME.as_nanos() / per_item.max(1);
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, 1024)
}
