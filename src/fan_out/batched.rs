//! The part [`broadcast`](super::broadcast) and [`partition`](super::partition)
//! share: branches that move their buffer out in one go and take items from it
//! without the lock, and the poll around the operator's own refill.
//!
//! # Invariants
//!
//! 1. **Held counts are exact.** `Hub::batched[slot]` is how many items
//!    branch `slot` holds outside the lock: set (under the lock) to the size
//!    of the batch it takes, lowered by one for each item it takes from the
//!    batch, reset to 0 when it is dropped or cancelled. Only the branch
//!    itself changes it, so it never wraps; buffer plus batch never exceeds
//!    the capacity.
//! 2. **A blocked branch is woken when room frees.** A branch that finds no
//!    room (a full slower branch in `broadcast`, a held item for a full lane
//!    in `partition`) parks in `blocked`, fences, and looks at the room
//!    again; a branch that takes an item lowers its count (a `SeqCst` RMW)
//!    and then looks at `blocked` (`any_parked_after_rmw`), and a dropped
//!    branch resets its count and looks too. So either the blocked branch
//!    sees the room, or it is woken.
//! 3. **Waiting for the source**: as in `fan_out` — a branch that finds the
//!    source pending parks in `waiting` with the epoch read when it took the
//!    lock; whoever pulls items for others or sees the end wakes everyone,
//!    and a pull whose last poll of the source returned an item (it then
//!    owes no wake-up to anyone: `fan_out`'s invariant 5) wakes `waiting`.
//!    `broadcast` pulls for every branch, so any item wakes everyone;
//!    `partition` says so with `Pulled::owes_no_wake_up`.
//! 4. Cancellation: the batch is taken without the lock only while the
//!    context's hint is down; once it is raised the lock confirms it, and a
//!    cancelled branch drops its batch and ends.
//! 5. **The source's panic is told before the lock is poisoned.** A refill
//!    polls the source (and runs the user's key function or `Clone`) inside
//!    [`Parked::poll_source`](super::Parked) *while it holds the guard*, so
//!    the panic's message is kept before unwinding drops the guard and
//!    poisons the lock; a branch blocked on the lock then always finds it.
//!    (Wrapping the whole refill, which owns the guard, let the lock go
//!    first: a branch woken by that said no message. Found by the chaos
//!    suite.)
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`).

use std::collections::VecDeque;
use std::fmt;
use std::task::{Context, Poll, Waker, ready};

use super::{CancelHint, Parked, WakeOnUnwind, lock};
use crate::internal::sync::{Arc, AtomicUsize, Mutex, MutexGuard, Ordering};

/// The state behind the lock of a batched operator.
pub(super) trait BatchedState<T> {
    /// Whether the bound context was cancelled; if so, the source and every
    /// buffered item are dropped.
    fn cancelled(&mut self) -> bool;

    /// The buffer of branch `slot`; `None` once that branch is dropped.
    fn buffer(&mut self, slot: usize) -> Option<&mut VecDeque<T>>;

    /// Runs before a branch takes its batch; returns whether branches blocked
    /// behind a full one may go on (they are woken once the lock is let go).
    fn unblock(&mut self, _batched: &[AtomicUsize]) -> bool {
        false
    }

    /// Bounds on how many items branch `slot` will still get beyond its
    /// batch, if no context stops the operator: `Stream::size_hint` for it.
    fn hint(&mut self, slot: usize) -> (usize, Option<usize>);

    /// Moves branch `slot`'s whole buffer into its (empty) batch.
    fn take_batch(&mut self, slot: usize, batch: &mut VecDeque<T>, batched: &AtomicUsize) {
        if let Some(buffer) = self.buffer(slot) {
            std::mem::swap(buffer, batch);
            batched.store(batch.len(), Ordering::SeqCst);
        }
    }
}

/// What the branches of one batched operator share.
pub(super) struct Hub<S> {
    pub(super) state: Mutex<S>,
    /// Per branch: how many items its batch holds. Set under the lock, taken
    /// down without it, read (under the lock) by a branch deciding whether
    /// there is room for another item.
    pub(super) batched: Box<[AtomicUsize]>,
    pub(super) parked: std::sync::Arc<Parked>,
    /// Wakes every parked branch; the only waker the source is polled with.
    pub(super) source_waker: Waker,
    pub(super) cancel_hint: Option<CancelHint>,
}

impl<S> Hub<S> {
    pub(super) fn new(
        state: S,
        branches: usize,
        parked: std::sync::Arc<Parked>,
        source_waker: Waker,
        cancel_hint: Option<CancelHint>,
    ) -> Arc<Self> {
        Arc::new(Hub {
            state: Mutex::new(state),
            batched: (0..branches).map(|_| AtomicUsize::new(0)).collect(),
            parked,
            source_waker,
            cancel_hint,
        })
    }

    /// Branch `slot` took an item from its batch: one more item of room, which
    /// a branch blocked on this one may be waiting for.
    pub(super) fn took_one(&self, slot: usize) {
        self.batched[slot].fetch_sub(1, Ordering::SeqCst);
        if self.parked.blocked.any_parked_after_rmw() {
            self.parked.blocked.wake_all();
        }
    }
}

/// One branch of a batched operator.
pub(super) struct BatchedBranch<T, S> {
    pub(super) hub: Arc<Hub<S>>,
    pub(super) slot: usize,
    /// Items moved out of this branch's buffer in one go, so that taking each
    /// of them needs no lock. They still count against the capacity (through
    /// `Hub::batched`) until taken.
    pub(super) batch: VecDeque<T>,
    pub(super) done: bool,
}

/// What an operator's refill gets: the locked state and this branch's parts.
pub(super) struct Refill<'a, 'b, T, S> {
    pub(super) state: MutexGuard<'a, S>,
    pub(super) hub: &'a Hub<S>,
    pub(super) slot: usize,
    pub(super) batch: &'a mut VecDeque<T>,
    pub(super) cx: &'a mut Context<'b>,
    /// The `waiting` set's epoch, read when the lock was taken.
    pub(super) epoch: usize,
    /// [`BatchedState::unblock`] freed branches that are not yet woken.
    pub(super) unblocked: bool,
}

/// What an operator's refill found for the branch.
pub(super) enum Refilled<T> {
    Item(T),
    End,
    Pending,
}

impl<T, S: BatchedState<T>> BatchedBranch<T, S> {
    pub(super) fn new(hub: &Arc<Hub<S>>, slot: usize) -> Self {
        BatchedBranch {
            hub: Arc::clone(hub),
            slot,
            batch: VecDeque::new(),
            done: false,
        }
    }

    /// Takes the next item from the batch — without the lock unless a
    /// cancellation may have happened — and, once the batch is empty, from the
    /// branch's buffer; only when both are empty does `refill` (the operator's
    /// own part) run, under the lock.
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        operator: &str,
        refill: impl FnOnce(Refill<'_, '_, T, S>) -> Refilled<T>,
    ) -> Poll<Option<T>> {
        if self.done {
            return Poll::Ready(None);
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let hub = &*self.hub;
        let slot = self.slot;

        // The batch needs no lock — unless a cancellation may have happened,
        // which only the lock can confirm.
        let maybe_cancelled = hub.cancel_hint.as_ref().is_some_and(CancelHint::raised);
        if !maybe_cancelled {
            if let Some(item) = self.batch.pop_front() {
                hub.took_one(slot);
                coop.made_progress();
                return Poll::Ready(Some(item));
            }
        }

        let _wake = WakeOnUnwind(&hub.source_waker);
        let mut state = lock(&hub.state, &hub.parked, operator);
        let epoch = hub.parked.waiting.epoch();
        if state.cancelled() {
            self.batch.clear();
            hub.batched[slot].store(0, Ordering::SeqCst);
            drop(state);
            hub.source_waker.wake_by_ref();
            self.done = true;
            return Poll::Ready(None);
        }
        let unblocked = state.unblock(&hub.batched);
        if self.batch.is_empty() {
            state.take_batch(slot, &mut self.batch, &hub.batched[slot]);
        }
        if let Some(item) = self.batch.pop_front() {
            drop(state);
            if unblocked {
                hub.parked.blocked.wake_all();
            }
            hub.took_one(slot);
            coop.made_progress();
            return Poll::Ready(Some(item));
        }

        // The refill polls the source inside `Parked::poll_source`, while it
        // holds the lock (invariant 5).
        let refilled = refill(Refill {
            state,
            hub,
            slot,
            batch: &mut self.batch,
            cx,
            epoch,
            unblocked,
        });
        match refilled {
            Refilled::Item(item) => {
                hub.took_one(slot);
                coop.made_progress();
                Poll::Ready(Some(item))
            }
            Refilled::End => {
                self.done = true;
                Poll::Ready(None)
            }
            Refilled::Pending => Poll::Pending,
        }
    }

    /// How many items this branch holds, buffered or batched.
    pub(super) fn len(&self) -> usize {
        let state = self.hub.state.lock();
        let buffered = state.map_or(0, |mut s| s.buffer(self.slot).map_or(0, |b| b.len()));
        buffered + self.batch.len()
    }

    /// `Stream::size_hint`: the batch, plus what the operator says; nothing
    /// promised while a context could stop the operator and drop it all.
    pub(super) fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // Poisoned: the source panicked; this branch panics at its next poll.
        let Ok(mut state) = self.hub.state.lock() else {
            return (0, None);
        };
        let (lower, upper) = state.hint(self.slot);
        drop(state);
        let batched = self.batch.len();
        let lower = if self.hub.cancel_hint.is_some() {
            0
        } else {
            lower.saturating_add(batched)
        };
        (lower, upper.and_then(|upper| upper.checked_add(batched)))
    }

    pub(super) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("index", &self.slot)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::hash::{DefaultHasher, Hash, Hasher};

    use futures::StreamExt;
    use loom::future::block_on;
    use loom::thread;

    use crate::fan_out::{broadcast, partition_with};
    use crate::internal::sync::model::{Chan, builder};

    /// The batch counters and the blocked set: with room for one item per
    /// branch, a fast branch waits for the slow one to take each item (it
    /// takes them from its batch without the lock) and is woken every time.
    /// Every branch gets every item, in order; nobody hangs.
    #[test]
    fn loom_broadcast_a_full_branch_wakes_the_one_blocked_on_it() {
        builder().check(|| {
            let source = Chan::new();
            let branches = broadcast(source.clone(), 2, 1);
            let consumers: Vec<_> = branches
                .into_iter()
                .map(|branch| thread::spawn(move || block_on(branch.collect::<Vec<u32>>())))
                .collect();
            source.send(1);
            source.send(2);
            source.close();
            for consumer in consumers {
                assert_eq!(consumer.join().unwrap(), [1, 2]);
            }
        });
    }

    /// The room a slow branch frees by taking one item from its batch — and
    /// nothing else, as it then stops polling — reaches the branch blocked
    /// on it: only `took_one`'s look at the blocked set can wake it.
    ///
    /// Catches a blocked branch that parks without looking at the room again,
    /// or without the fence between the two, and a `took_one` that looks at
    /// the blocked set without its `SeqCst` pairing.
    #[test]
    fn loom_broadcast_room_freed_by_a_batch_take_wakes_the_blocked() {
        builder().check(|| {
            let source = Chan::new();
            source.send(1);
            source.send(2);
            let mut branches = broadcast(source, 2, 1);
            let (mut fast, mut slow) = (branches.remove(0), branches.remove(0));
            assert_eq!(block_on(fast.next()), Some(1));
            // `slow` now holds 1: `fast` waits for it to take it.
            let slow = thread::spawn(move || {
                assert_eq!(block_on(slow.next()), Some(1));
                slow // kept alive, never polled again
            });
            assert_eq!(block_on(fast.next()), Some(2));
            drop(slow.join().unwrap());
        });
    }

    /// A branch dropped while another is blocked on it releases that one.
    #[test]
    fn loom_broadcast_a_dropped_branch_releases_the_blocked() {
        builder().check(|| {
            let source = Chan::new();
            source.send(1);
            source.send(2);
            source.close();
            let mut branches = broadcast(source, 2, 1);
            let (mut fast, slow) = (branches.remove(0), branches.remove(0));
            let dropper = thread::spawn(move || drop(slow));
            let got = block_on(async {
                let mut got = Vec::new();
                while let Some(item) = fast.next().await {
                    got.push(item);
                }
                got
            });
            dropper.join().unwrap();
            assert_eq!(got, [1, 2]);
        });
    }

    /// The held item of `partition`: a lane blocked behind another lane's
    /// full buffer is woken when that lane takes an item, and each lane gets
    /// its own items in order.
    #[test]
    fn loom_partition_a_held_item_is_released() {
        // Two keys that hash to different lanes of two.
        let lane_of = |key: u32| {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish() % 2
        };
        let a = 0;
        let b = (1..).find(|&key| lane_of(key) != lane_of(a)).unwrap();
        builder().check(move || {
            let source = Chan::new();
            let lanes = partition_with(source.clone(), 2, 1, |key: &u32| *key);
            let consumers: Vec<_> = lanes
                .into_iter()
                .map(|lane| thread::spawn(move || block_on(lane.collect::<Vec<u32>>())))
                .collect();
            for key in [a, a, b] {
                source.send(key);
            }
            source.close();
            let mut got: Vec<Vec<u32>> = consumers
                .into_iter()
                .map(|consumer| consumer.join().unwrap())
                .collect();
            got.sort();
            let mut want = vec![vec![a, a], vec![b]];
            want.sort();
            assert_eq!(got, want);
        });
    }
}
