//! Delivery: storing a message, attaching a subscription, and handing each
//! subscription what it has not taken yet (invariants 1 to 3 and 7 of
//! `core.rs`).
//!
//! Ring subscriptions copy from the one stored copy in batches; private ones
//! take from their own queue. A message leaves the ring as soon as every ring
//! subscription has copied it and it is older than the replay window, or when
//! it is `capacity` behind (only a lagging DropOldest subscription can still
//! want it then: it counts it as missed).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use super::SlowSubscriber;
use super::core::{Core, Handle, Padded, PrivateEntry, RingEntry, Shared, Took};
use super::error::EndReason;

/// The most messages a subscription copies out of the ring under one lock.
const BATCH: u64 = 256;

impl<T> Core<T> {
    /// Drops messages from the front that nobody needs (invariant 3).
    pub(super) fn pop_unneeded(&mut self, replay: usize) {
        let keep_from = self.tail.saturating_sub(replay as u64).min(self.passed);
        while self.base < keep_from && self.ring.pop_front().is_some() {
            self.base += 1;
        }
    }

    pub(super) fn recompute_passed(&mut self) {
        self.passed = self
            .ring_subs
            .iter()
            .map(|entry| entry.cursor)
            .min()
            .unwrap_or(self.tail);
    }

    /// Private subscription `id` wants its next message, which it expects to
    /// be number `expected`.
    pub(super) fn take_private(
        &mut self,
        id: usize,
        expected: u64,
        cache: &mut VecDeque<(u64, T)>,
        waker: &Waker,
    ) -> Took {
        let ended = self.end.is_some();
        let entry = self.private_subs.get_mut(id);
        match entry.queue.front() {
            Some(&(seq, _)) if seq != expected => return Took::GapBefore { seq },
            Some(_) => {
                cache.extend(entry.queue.pop_front());
                return Took::Some { skipped: 0 };
            }
            None => {}
        }
        if entry.disconnected || ended {
            return Took::End {
                missed: entry.missed,
            };
        }
        park(&mut entry.waker, waker);
        Took::Parked
    }
}

impl<T: Clone> Core<T> {
    /// Publishes `msg` (the caller checked it may: not closed, its turn, room).
    /// Returns how many subscriptions received it.
    pub(super) fn push(&mut self, msg: T, shared: &Shared<T>) -> usize {
        let seq = self.tail;
        let capacity = shared.capacity;
        let mut reached = self.ring_subs.len();
        for entry in self.private_subs.iter_mut() {
            if entry.disconnected {
                continue;
            }
            if entry.queue.len() < capacity {
                entry.queue.push_back((seq, msg.clone()));
                reached += 1;
            } else {
                entry.missed += 1;
                if !entry.disconnect {
                    continue;
                }
                entry.disconnected = true;
                shared.subscribers.fetch_sub(1, Ordering::SeqCst);
            }
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
        }
        self.tail += 1;
        let replay = shared.replay.load(Ordering::Relaxed);
        if self.ring_subs.len() > 0 || replay > 0 {
            if self.ring.len() == capacity {
                // Invariant 3: only lagging DropOldest subscriptions lose it.
                self.ring.pop_front();
                self.base += 1;
            }
            self.ring.push_back(msg);
            if self.ring_subs.len() == 0 {
                self.passed = self.tail;
            }
            self.pop_unneeded(replay);
            self.wake_ring_parked();
        } else {
            debug_assert!(self.ring.is_empty());
            self.base = self.tail;
            self.passed = self.tail;
        }
        shared.tail.store(self.tail, Ordering::Release);
        reached
    }

    /// Attaches a new subscription with `policy`, holding the replay window.
    /// Returns how it is attached and the first message it will see.
    pub(super) fn subscribe(
        &mut self,
        policy: SlowSubscriber,
        shared: &Shared<T>,
    ) -> (Handle, u64) {
        if matches!(self.end, Some(EndReason::Cancelled(_))) {
            return (Handle::Detached, self.tail);
        }
        let replay = shared.replay.load(Ordering::Relaxed) as u64;
        let start = self.tail.saturating_sub(replay).max(self.base);
        let held = (start - self.base) as usize..self.ring.len();
        shared.subscribers.fetch_add(1, Ordering::SeqCst);
        let handle = match policy {
            SlowSubscriber::Backpressure | SlowSubscriber::DropOldest => {
                if self.ring_subs.len() == 0 || start < self.passed {
                    self.passed = start;
                }
                let next = (policy == SlowSubscriber::Backpressure).then(|| {
                    if self.backpressure == 0 || start < self.floor {
                        self.floor = start;
                    }
                    self.backpressure += 1;
                    Arc::new(Padded(AtomicU64::new(start)))
                });
                let id = self.ring_subs.insert(RingEntry {
                    cursor: start,
                    next: next.clone(),
                    waker: None,
                });
                Handle::Ring {
                    id,
                    cursor: start,
                    next,
                }
            }
            SlowSubscriber::DropNewest | SlowSubscriber::Disconnect => {
                let queue = self
                    .ring
                    .range(held)
                    .zip(start..)
                    .map(|(msg, seq)| (seq, msg.clone()))
                    .collect();
                let id = self.private_subs.insert(PrivateEntry {
                    queue,
                    disconnect: policy == SlowSubscriber::Disconnect,
                    disconnected: false,
                    missed: 0,
                    waker: None,
                });
                Handle::Private { id }
            }
        };
        (handle, start)
    }

    /// Ring subscription `id` copies what it has not seen into `cache`.
    pub(super) fn take_ring(
        &mut self,
        id: usize,
        cursor: &mut u64,
        cache: &mut VecDeque<(u64, T)>,
        waker: &Waker,
        replay: usize,
    ) -> Took {
        let start = (*cursor).max(self.base);
        let skipped = start - *cursor;
        let end = self.tail.min(start + BATCH);
        let from = (start - self.base) as usize;
        // A panicking `Clone` leaves the topic's state whole: cursors move after.
        let copies = self.ring.range(from..from + (end - start) as usize);
        cache.extend((start..).zip(copies.cloned()));
        *cursor = end;
        let entry = self.ring_subs.get_mut(id);
        let was = std::mem::replace(&mut entry.cursor, end);
        if end > start {
            if was <= self.passed {
                self.recompute_passed();
                self.pop_unneeded(replay);
            }
            return Took::Some { skipped };
        }
        if self.end.is_some() {
            return Took::End { missed: 0 };
        }
        if entry.waker.is_none() {
            self.ring_parked += 1;
        }
        park(&mut entry.waker, waker);
        Took::Parked
    }
}

fn park(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(old) => old.clone_from(waker),
        None => *slot = Some(waker.clone()),
    }
}
