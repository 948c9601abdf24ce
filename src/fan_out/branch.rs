//! [`fan_out`]: each item to exactly one branch, the first that asks.
//!
//! # Invariants
//!
//! 1. **Exactly once.** The source is polled only under the state lock, by
//!    the branch that asks, and the item it yields is returned by that poll:
//!    no item is ever held for a branch, so none is lost with a dropped branch
//!    and none is given twice.
//! 2. **Nobody waits for nothing.** A branch returns `Pending` only parked in
//!    one of the two sets:
//!    - `waiting`, after the source returned `Pending` to it — it parks with
//!      the epoch read *before* that poll, so a wake-up of the source during
//!      the poll is repeated ([`WakerSet`](crate::internal::waker_set)'s
//!      invariant 2);
//!    - `blocked`, after it found the lock taken — it parks, fences and tries
//!      the lock again, while the holder, after letting go, fences and looks
//!      at `blocked` and wakes it if it yielded an item, or if a wake-up came
//!      while it held the lock. So a blocked branch is either let in or woken.
//! 3. **A wake-up is never owned by one branch.** Every wake-up of the source
//!    (its waker, the end, a cancel) wakes both sets whole. A branch woken
//!    and then dropped without polling again so never strands another: the
//!    others were woken too, or parked later and looked at the source
//!    themselves. (Before the "after letting go" of invariant 2, a branch that
//!    found the lock taken just as the holder re-woke the sets, the holder
//!    then dropped, waited for ever: found by the loom model below.)
//! 4. The source's panic poisons the lock; every other branch then panics at
//!    its next poll with the source's message (woken for it by
//!    [`WakeOnUnwind`]).
//! 5. **Taking an item takes the source's wake-up.** A source owes a wake-up
//!    only to its last poll, and none once that poll returned an item. So a
//!    branch whose poll returned an item wakes the branches parked in
//!    `waiting` (they park under the lock it held, so it sees them): they ask
//!    again, and one of them re-arms the source or takes the next item. A
//!    branch that took an item and is then dropped, or not polled for a
//!    while, holds up no branch that asked before it. (Before this, a pool's
//!    results — ready before their batched wake-up — were taken by a branch
//!    that was then dropped, and the branch waiting for the rest was never
//!    woken: found by the chaos suite.)
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use futures::stream::{BoxStream, FusedStream};

use super::{Branches, CancelWatch, Parked, WakeOnUnwind, try_lock};
use crate::internal::sync::{Arc, Mutex, Ordering, fence};

const OPERATOR: &str = "fan_out";

/// Splits `source` into `n` branches; each item goes to exactly one of them —
/// the first to ask. Go: several goroutines ranging over one channel.
///
/// The source is polled only when a branch asks for an item, under a lock held
/// for that one poll, so no branch ever holds an item it was not asked for: a
/// dropped branch takes nothing with it. A branch that asks while another is
/// polling the source, or while the source has nothing ready, is parked and
/// woken when there may be an item (or the end). All branches end when the
/// source ends; the source is dropped when it ends, when a bound context is
/// cancelled, or when the last branch is dropped. Within a branch, items come in
/// source order.
///
/// Usually called as [`ConcurrentStreamExt::fan_out`](crate::ConcurrentStreamExt::fan_out).
///
/// # Panics
///
/// If `n` is 0.
///
/// ```
/// use futures::StreamExt;
///
/// # #[tokio::main]
/// # async fn main() {
/// let branches = tokio_conc::fan_out::fan_out(futures::stream::iter(1..=100), 3);
/// let tasks: Vec<_> = branches
///     .into_iter()
///     .map(|branch| tokio::spawn(branch.collect::<Vec<u32>>()))
///     .collect();
/// let mut all = Vec::new();
/// for task in tasks {
///     all.extend(task.await.unwrap());
/// }
/// all.sort();
/// assert_eq!(all, (1..=100).collect::<Vec<_>>());
/// # }
/// ```
pub fn fan_out<S>(source: S, n: impl Into<Branches>) -> Vec<Branch<S::Item>>
where
    S: Stream + Send + 'static,
{
    let branches = n.into();
    let parked = Parked::new(branches.count());
    let source_waker = Waker::from(std::sync::Arc::clone(&parked));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            source: Some(Box::pin(source)),
            cancel: branches.cancel_watch(&source_waker),
        }),
        parked,
        source_waker,
    });
    (0..branches.count())
        .map(|slot| Branch {
            shared: Arc::clone(&shared),
            slot,
            done: false,
        })
        .collect()
}

/// One branch of [`fan_out`]: a stream of the items it was first to ask for.
///
/// `Send + 'static`: move it into its own task. Dropping it loses no item.
pub struct Branch<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
    done: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    parked: std::sync::Arc<Parked>,
    /// Wakes every parked branch; the only waker the source is polled with.
    source_waker: Waker,
}

struct State<T> {
    /// `None` once the source ended or the context was cancelled.
    source: Option<BoxStream<'static, T>>,
    cancel: Option<CancelWatch>,
}

impl<T> State<T> {
    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.cancel.as_mut().is_some_and(CancelWatch::is_cancelled) {
            self.source = None;
        }
        let Some(source) = self.source.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = source.as_mut().poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.source = None;
        }
        polled
    }
}

impl<T> Stream for Branch<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.done {
            return Poll::Ready(None);
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let this = &mut *self;
        let shared = &*this.shared;
        let parked = &*shared.parked;

        let _wake = WakeOnUnwind(&shared.source_waker);
        let mut state = match try_lock(&shared.state, parked, OPERATOR) {
            Some(state) => state,
            None => {
                // Another branch is polling the source. Park first, then look
                // again: either that branch sees us parked when it lets go, or
                // we see the lock free (the fences order the two).
                parked.blocked.register(this.slot, cx.waker());
                fence(Ordering::SeqCst);
                let Some(state) = try_lock(&shared.state, parked, OPERATOR) else {
                    return Poll::Pending;
                };
                parked.blocked.unregister(this.slot);
                state
            }
        };

        let epoch = parked.waiting.epoch();
        let polled = parked
            .poll_source(|| state.poll_source(&mut Context::from_waker(&shared.source_waker)));
        match polled {
            Poll::Ready(Some(item)) => {
                drop(state);
                // Branches that found the lock taken wait for us to let go;
                // the source may have more ready for them. Branches parked
                // in `waiting` asked before us and got `Pending`, but this
                // poll took the source's wake-up from them (invariant 5).
                parked.wake_after_item();
                coop.made_progress();
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                drop(state);
                shared.source_waker.wake_by_ref();
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The source will wake the parked branches; join them. If it
                // already woke them while we were polling, branches that parked
                // meanwhile may have missed it: wake everyone again — after
                // letting go, so that a branch that found the lock taken up
                // to the last moment is seen too (the fences order its
                // parking against our look). Waking only ourselves would
                // strand it if we were dropped before polling again.
                parked.waiting.park(this.slot, cx.waker(), epoch);
                drop(state);
                // `any_parked` first: its fence also orders the look at the
                // epoch after a blocked branch's parking, and so after any
                // wake-up that branch missed.
                if parked.blocked.any_parked() && parked.waiting.epoch() != epoch {
                    parked.blocked.wake_all();
                }
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.hint()
    }
}

impl<T> Branch<T> {
    /// At most what the source has left (any of it may go to another
    /// branch); nothing is promised.
    fn hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // Another branch polling the source, or a poisoned lock: unknown.
        let Ok(state) = self.shared.state.try_lock() else {
            return (0, None);
        };
        let upper = state
            .source
            .as_ref()
            .map_or(Some(0), |source| source.size_hint().1);
        (0, upper)
    }
}

impl<T> FusedStream for Branch<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for Branch<T> {
    fn drop(&mut self) {
        self.shared.parked.unregister(self.slot);
    }
}

impl<T> fmt::Debug for Branch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Branch")
            .field("index", &self.slot)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::future::poll_fn;

    use futures::StreamExt;
    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::internal::sync::model::{Chan, builder};

    /// Exactly-once hand-off with no lost wake-up: two branches on two
    /// threads share a source fed by a third; each item reaches exactly one
    /// branch, and both branches end once the source does.
    #[test]
    fn loom_each_item_goes_to_exactly_one_branch() {
        builder().check(|| {
            let source = Chan::new();
            let branches = fan_out(source.clone(), 2);
            let consumers: Vec<_> = branches
                .into_iter()
                .map(|branch| thread::spawn(move || block_on(branch.collect::<Vec<u32>>())))
                .collect();
            source.send(1);
            source.send(2);
            source.close();
            let mut got: Vec<u32> = consumers
                .into_iter()
                .flat_map(|consumer| consumer.join().unwrap())
                .collect();
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
        });
    }

    /// A branch that was polled, parked, woken and then dropped without
    /// polling again must not take the wake-up with it: a branch that found
    /// the source's lock taken meanwhile still gets the item.
    #[test]
    fn loom_a_dropped_branch_strands_no_other() {
        builder().check(|| {
            let source = Chan::new();
            let mut branches = fan_out(source.clone(), 2);
            let (mut dropped, kept) = (branches.remove(0), branches.remove(0));
            let dropper = thread::spawn(move || {
                let got = block_on(poll_fn(|cx| Poll::Ready(dropped.poll_next_unpin(cx))));
                drop(dropped);
                got
            });
            let keeper = thread::spawn(move || {
                let mut kept = kept;
                block_on(kept.next())
            });
            source.send(1);
            if let Poll::Ready(Some(_)) = dropper.join().unwrap() {
                // The item went to the dropped branch: end the source so
                // that the kept one ends too.
                source.close();
                assert_eq!(keeper.join().unwrap(), None);
            } else {
                // Nothing but the item's own wake-up can wake the kept
                // branch: it must get the item.
                assert_eq!(keeper.join().unwrap(), Some(1));
            }
        });
    }
}
