//! Backpressure: whether a publisher may go on, and waking it when it may
//! (invariants 4 to 6 of `core.rs`).
//!
//! A Backpressure subscription advances its `next` without the lock as it
//! yields. A publisher that finds one of them `capacity` behind announces, in
//! `wake_at`, the message it waits to see yielded (the smallest `next`), then
//! looks again; the subscription that yields that message looks again under
//! the lock, on the publisher's behalf, and wakes it only if there is room —
//! otherwise it moves `wake_at` on to the new smallest `next`. Both sides store
//! before they load (`SeqCst`), so one of them always sees the other.

use std::sync::atomic::{AtomicU64, Ordering};

use super::core::{Core, Shared};

impl<T> Shared<T> {
    /// A Backpressure subscription yielded message `seq`. If the blocked
    /// publisher waits for that message, this subscription may have been the
    /// last to hold it up: it looks again, under the lock (invariant 5).
    pub(super) fn yielded(&self, next: &AtomicU64, seq: u64) {
        next.store(seq + 1, Ordering::SeqCst);
        if self.wake_at.load(Ordering::SeqCst) != seq {
            return;
        }
        let mut core = self.lock();
        if core.waiters.is_empty() {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
        } else if self.wake_at.load(Ordering::SeqCst) != u64::MAX && core.room_or_announce(self) {
            core.wake_front_waiter();
        }
    }
}

impl<T> Core<T> {
    /// Whether every Backpressure subscription has room for one more message.
    pub(super) fn has_room(&mut self, capacity: usize) -> bool {
        if self.backpressure == 0 || self.tail - self.floor < capacity as u64 {
            return true;
        }
        self.floor = self
            .ring_subs
            .iter()
            .filter_map(|entry| entry.next.as_ref())
            .map(|next| next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(self.tail);
        self.tail - self.floor < capacity as u64
    }

    /// [`has_room`](Self::has_room) for a publisher that waits if not, or on
    /// its behalf: without room, announces the message it waits to see yielded
    /// (the smallest `next`), then looks again (invariant 5). `wake_at` is
    /// clear whenever this returns `true`.
    pub(super) fn room_or_announce(&mut self, shared: &Shared<T>) -> bool {
        if !self.has_room(shared.capacity) {
            shared.wake_at.store(self.floor, Ordering::SeqCst);
            if !self.has_room(shared.capacity) {
                return false;
            }
        }
        // Only a blocked publisher set it: the common case writes nothing
        // to the line every yielding subscription reads.
        if shared.wake_at.load(Ordering::SeqCst) != u64::MAX {
            shared.wake_at.store(u64::MAX, Ordering::SeqCst);
        }
        true
    }
}
