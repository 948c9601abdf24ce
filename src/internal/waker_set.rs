//! [`WakerSet`]: the parked consumers of one shared resource, woken together.
//!
//! Several handles (the branches of a fan-out) share one source. A source keeps
//! only the last waker it was polled with, so polling it with each handle's own
//! waker would lose every wake-up but the last. Instead each handle parks in a
//! set, and the source is polled with a waker that calls
//! [`WakerSet::wake_all`].
//!
//! # Invariants
//!
//! 1. **The count is exact.** `parked` equals the number of occupied slots
//!    whenever the lock is free: it changes only under the lock (`register`
//!    adds one as it fills an empty slot, `unregister` subtracts one as it
//!    empties a full one, `wake_all` stores 0 as it empties them all). Reads
//!    outside the lock are only shortcuts to skip it. So the count never
//!    wraps around, and `any_parked` never says "nobody" while a handle is
//!    parked. (A `fetch_sub` after the lock was let go once raced a
//!    `wake_all`'s reset and wrapped the count: a branch was stranded.)
//! 2. **No wake-up is lost to a late park.** `epoch` is bumped by every
//!    `wake_all` *before* it looks at the slots. A handle reads the epoch
//!    before it looks at the resource and parks with it: if a `wake_all` ran
//!    in between, `park` sees the epoch moved and wakes everyone again.
//! 3. **Park-then-check against change-then-look.** A handle that parks and
//!    then looks at the resource (a `SeqCst` read-modify-write, then a fence),
//!    and a holder that changes the resource and then asks `any_parked` (a
//!    fence, then a `SeqCst` load), cannot both miss each other.
//! 4. Each parked slot is woken at most once per `wake_all`, and waking never
//!    re-enters the set.
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`).

use std::sync::PoisonError;
use std::task::Waker;

use crate::internal::sync::{Arc, AtomicUsize, Mutex, MutexGuard, Ordering, fence, sc_order};

/// A fixed number of slots, one per handle, each holding the waker of a parked
/// handle until the next [`wake_all`](WakerSet::wake_all).
#[derive(Debug)]
pub(crate) struct WakerSet {
    slots: Mutex<Vec<Option<Waker>>>,
    /// How many slots hold a waker: lets the hot path skip the lock.
    parked: AtomicUsize,
    /// Bumped by every `wake_all`, so a handle can tell whether a wake-up
    /// happened between its last look at the resource and its parking.
    epoch: AtomicUsize,
}

impl WakerSet {
    pub(crate) fn new(slots: usize) -> Arc<Self> {
        Arc::new(WakerSet {
            slots: Mutex::new(vec![None; slots]),
            parked: AtomicUsize::new(0),
            epoch: AtomicUsize::new(0),
        })
    }

    /// The wake-up count, to pass to [`park`](WakerSet::park) later.
    pub(crate) fn epoch(&self) -> usize {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Parks `slot` with `waker`. If a `wake_all` ran since `epoch` was read,
    /// the wake-up may have missed this slot — and any slot parked meanwhile —
    /// so it is repeated: waking only this slot would strand the others if this
    /// handle were dropped before it polls again.
    pub(crate) fn park(&self, slot: usize, waker: &Waker, epoch: usize) {
        self.register(slot, waker);
        // Registering was a `SeqCst` RMW of `parked`; `wake_all` bumps the
        // epoch and then loads `parked`: one of the two sees the other.
        sc_order();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.wake_all();
        }
    }

    /// Parks `slot` with `waker`, unconditionally.
    pub(crate) fn register(&self, slot: usize, waker: &Waker) {
        let mut slots = self.lock();
        match &mut slots[slot] {
            Some(old) if old.will_wake(waker) => {}
            Some(old) => old.clone_from(waker),
            empty @ None => {
                *empty = Some(waker.clone());
                self.parked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Forgets `slot`'s waker (its handle is gone, or no longer waits).
    pub(crate) fn unregister(&self, slot: usize) {
        if self.parked.load(Ordering::SeqCst) == 0 {
            return;
        }
        // The count changes under the lock, like the slots: a `wake_all` in
        // between would otherwise reset it and this would wrap it around.
        let mut slots = self.lock();
        if slots[slot].take().is_some() {
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether any handle is parked. Paired with a `SeqCst` fence so that a
    /// handle that parks and then finds the resource busy, and the holder that
    /// releases the resource and then looks here, cannot both miss each other.
    pub(crate) fn any_parked(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::SeqCst) > 0
    }

    /// [`any_parked`](WakerSet::any_parked) without the fence, for a caller
    /// whose last write to the resource was a `SeqCst` read-modify-write: the
    /// handle parks with one too, and reads the resource with a `SeqCst` load,
    /// so the single order of `SeqCst` operations already keeps the two from
    /// both missing each other — and the fence is a full barrier per call.
    pub(crate) fn any_parked_after_rmw(&self) -> bool {
        sc_order();
        self.parked.load(Ordering::SeqCst) > 0
    }

    /// Wakes and forgets every parked handle.
    pub(crate) fn wake_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        sc_order();
        if self.parked.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut slots = self.lock();
        for slot in slots.iter_mut() {
            if let Some(waker) = slot.take() {
                // Waking only schedules the handle's task; it never re-enters
                // this set, so doing it under the lock is safe.
                waker.wake();
            }
        }
        self.parked.store(0, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Waker>>> {
        // The slots are plain data, valid even if a holder panicked.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::internal::wake_counter::WakeCounter;

    #[test]
    fn wake_all_wakes_each_parked_slot_once() {
        let set = WakerSet::new(3);
        let counters: Vec<_> = (0..3).map(|_| WakeCounter::new()).collect();
        let wakers: Vec<Waker> = counters.iter().map(WakeCounter::waker).collect();
        set.register(0, &wakers[0]);
        set.register(2, &wakers[2]);
        set.register(2, &wakers[2]);
        assert!(set.any_parked());
        set.wake_all();
        set.wake_all();
        let woken: Vec<usize> = counters.iter().map(|c| c.count()).collect();
        assert_eq!(woken, [1, 0, 1]);
        assert!(!set.any_parked());
    }

    #[test]
    fn park_after_a_missed_wake_wakes_at_once() {
        let set = WakerSet::new(1);
        let counter = WakeCounter::new();
        let epoch = set.epoch();
        set.wake_all(); // nobody parked yet: this wake-up would be lost
        set.park(0, &counter.waker(), epoch);
        assert_eq!(counter.count(), 1);
    }

    #[test]
    fn unregister_forgets_the_slot() {
        let set = WakerSet::new(2);
        let counter = WakeCounter::new();
        set.register(1, &counter.waker());
        set.unregister(1);
        set.wake_all();
        assert_eq!(counter.count(), 0);
        assert!(!set.any_parked());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::internal::sync::AtomicBool;
    use crate::internal::sync::model::builder;

    impl WakerSet {
        /// Invariant 1: the count matches the slots (with the lock free).
        fn assert_count_exact(&self) {
            let occupied = self.lock().iter().filter(|slot| slot.is_some()).count();
            assert_eq!(self.parked.load(Ordering::SeqCst), occupied);
        }
    }

    /// The race a release-mode stress run once found: an `unregister`
    /// racing a `wake_all` must not wrap the count around (after which a
    /// parked handle reads as none, and is never woken).
    #[test]
    fn loom_unregister_racing_wake_all_keeps_the_count_exact() {
        builder().check(|| {
            let set = WakerSet::new(2);
            let other = Arc::clone(&set);
            let handle = thread::spawn(move || {
                other.register(0, Waker::noop());
                other.unregister(0);
            });
            set.wake_all();
            handle.join().unwrap();
            set.assert_count_exact();
            set.register(1, Waker::noop());
            set.assert_count_exact();
            assert!(set.any_parked());
        });
    }

    /// Invariant 2: a handle that read the epoch, found nothing, and parks
    /// after the resource changed and `wake_all` ran, is still woken.
    #[test]
    fn loom_park_after_a_wake_all_is_not_lost() {
        builder().check(|| {
            let set = WakerSet::new(2);
            let ready = Arc::new(AtomicBool::new(false));
            let (set2, ready2) = (Arc::clone(&set), Arc::clone(&ready));
            let producer = thread::spawn(move || {
                ready2.store(true, Ordering::SeqCst);
                set2.wake_all();
            });
            block_on(poll_fn(|cx| {
                let epoch = set.epoch();
                if ready.load(Ordering::SeqCst) {
                    set.unregister(0);
                    return Poll::Ready(());
                }
                set.park(0, cx.waker(), epoch);
                Poll::Pending
            }));
            producer.join().unwrap();
            set.assert_count_exact();
        });
    }

    /// Invariant 3: park-then-look against change-then-look: the holder that
    /// frees the resource and the handle that parks on it cannot both miss.
    #[test]
    fn loom_park_then_look_meets_change_then_look() {
        builder().check(|| {
            let set = WakerSet::new(1);
            let free = Arc::new(AtomicBool::new(false));
            let (set2, free2) = (Arc::clone(&set), Arc::clone(&free));
            let holder = thread::spawn(move || {
                free2.store(true, Ordering::SeqCst);
                if set2.any_parked() {
                    set2.wake_all();
                }
            });
            block_on(poll_fn(|cx| {
                set.register(0, cx.waker());
                fence(Ordering::SeqCst);
                if free.load(Ordering::SeqCst) {
                    set.unregister(0);
                    return Poll::Ready(());
                }
                Poll::Pending
            }));
            holder.join().unwrap();
            set.assert_count_exact();
        });
    }
}
