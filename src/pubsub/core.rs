//! The state every handle of one topic shares, and the protocol between
//! publishers and subscriptions.
//!
//! # Layout
//!
//! Every message gets a sequence number, in publish order; `tail` is the next
//! one. *Ring* subscriptions (Backpressure and DropOldest) read from one shared
//! ring that stores each message once (sequence numbers `base..tail`); each
//! copies (clones) what it has not seen yet out of the ring in batches,
//! following its own `cursor`, and yields the copies without the lock.
//! *Private* subscriptions (DropNewest and Disconnect) get their clone pushed
//! into a queue of their own at publish time: what a DropNewest subscription
//! holds has holes in it, and what a disconnected one holds outlives its place
//! in the ring, so neither can be a window on the ring.
//!
//! # Invariants (under the `core` lock unless said otherwise)
//!
//! 1. `ring.len() == tail - base <= capacity`; an empty ring has `base == tail`.
//! 2. Each ring subscription's entry holds its `cursor`: the first message it
//!    has not copied yet. It needs every message from `cursor` on. `passed` is
//!    a lower bound of the smallest cursor (`tail` when there is no ring
//!    subscription); it is recomputed when the subscription at it moves on or
//!    leaves, and lowered when a new one starts before it.
//! 3. A message leaves the front of the ring either when it is below `passed`
//!    (nobody needs it) and older than the replay window (the last `replay`
//!    messages, which therefore are always in the ring), or to make room at
//!    `capacity`. Only a DropOldest subscription can still need a message
//!    dropped for room (4 keeps Backpressure ones from falling that far
//!    behind); it counts it as missed when it next copies (its cursor is
//!    behind `base`).
//! 4. Backpressure: a message is published only while every Backpressure
//!    subscription has `tail - next < capacity`, where its `next` — the first
//!    message it has not yielded — is an atomic it advances without the lock.
//!    `floor` is a lower bound of the smallest such `next`.
//! 5. A publisher blocked by 4 is at the front of `waiters` and stored `floor`
//!    in `Shared::wake_at` *before* it last re-read the `next`s; a subscription
//!    stores its `next` *before* it reads `wake_at` (all `SeqCst`). So either
//!    the publisher sees the room, or the subscription that yields message
//!    `wake_at` sees it. That one looks again under the lock, on the
//!    publisher's behalf: it wakes the publisher if there is room now, or else
//!    moves `wake_at` to the new `floor` and looks once more (the same
//!    pattern). So the publisher is woken once, when room appears — not by
//!    every subscription that passes the message, nor by those ahead of it.
//! 6. Publishers are served in FIFO order: while `waiters` is not empty only its
//!    front may publish, and whoever leaves the front wakes the next.
//! 7. A subscription parks (stores its waker) only under the lock, after
//!    finding nothing to take; publish, close and abort wake parked
//!    subscriptions under the same lock, so no wake-up is lost.
//! 8. Once `end` is [`EndReason::Cancelled`] the ring and every queue are empty
//!    and stay so; `end` is `Some` exactly when the topic is closed.
//!
//! A message's `Clone` and `Drop` run under the lock (copying a batch, dropping
//! what nobody needs any more): they must not call back into the same topic.
//!
//! This file holds the state, close, abort and unsubscribe; `deliver.rs` keeps
//! 1–3 and 7 (publish, subscribe, take), `room.rs` keeps 4 and 5, `publish.rs`
//! keeps 6.

use std::collections::VecDeque;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use super::SlowSubscriber;
use super::error::EndReason;
use super::slab::Slab;
use crate::context::{CancelledOwned, ContextError};

/// Keeps a hot atomic on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Padded<A>(pub(super) A);

impl<A> Deref for Padded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.0
    }
}

/// What all handles of one topic share.
pub(super) struct Shared<T> {
    core: Mutex<Core<T>>,
    pub(super) capacity: usize,
    /// `core.tail`, for readers without the lock: a DropOldest subscription
    /// drops what fell `capacity` behind it.
    pub(super) tail: Padded<AtomicU64>,
    /// Invariant 5: the message a blocked publisher waits to see yielded;
    /// `u64::MAX` when none waits.
    pub(super) wake_at: Padded<AtomicU64>,
    /// Counts publishes (racily: it only paces the cooperative budget).
    pub(super) publishes: AtomicU32,
    /// The topic is closed (or aborted): no more messages.
    pub(super) closed: AtomicBool,
    /// The topic was aborted by its context: everything held is dropped.
    pub(super) aborted: AtomicBool,
    /// Live subscriptions (not dropped, not disconnected).
    pub(super) subscribers: AtomicUsize,
    /// How many of the last messages each new subscription gets.
    pub(super) replay: AtomicUsize,
    /// Clones of the `Topic` handle; the last one to go closes the topic.
    pub(super) handles: AtomicUsize,
    /// The registration with the context, if any (see `watch.rs`).
    pub(super) watch: Mutex<Option<Pin<Box<CancelledOwned>>>>,
}

pub(super) struct RingEntry {
    /// The first message it has not copied (invariant 2).
    pub(super) cursor: u64,
    /// Backpressure only: the first message not yielded yet (invariant 4).
    pub(super) next: Option<Arc<Padded<AtomicU64>>>,
    pub(super) waker: Option<Waker>,
}

pub(super) struct PrivateEntry<T> {
    pub(super) queue: VecDeque<(u64, T)>,
    pub(super) disconnect: bool,
    pub(super) disconnected: bool,
    pub(super) missed: u64,
    pub(super) waker: Option<Waker>,
}

/// A publisher waiting for its turn or for room.
pub(super) struct Waiter {
    pub(super) id: u64,
    pub(super) waker: Waker,
}

/// How a subscription is attached to the topic.
#[derive(Debug)]
pub(super) enum Handle {
    Ring {
        id: usize,
        cursor: u64,
        next: Option<Arc<Padded<AtomicU64>>>,
    },
    Private {
        id: usize,
    },
    /// Subscribed to an aborted topic: never attached.
    Detached,
}

/// The state behind the lock.
pub(super) struct Core<T> {
    pub(super) ring: VecDeque<T>,
    pub(super) base: u64,
    pub(super) tail: u64,
    pub(super) ring_subs: Slab<RingEntry>,
    pub(super) ring_parked: usize,
    pub(super) passed: u64,
    pub(super) private_subs: Slab<PrivateEntry<T>>,
    pub(super) backpressure: usize,
    pub(super) floor: u64,
    pub(super) waiters: VecDeque<Waiter>,
    pub(super) next_waiter: u64,
    pub(super) end: Option<EndReason>,
    pub(super) policy: SlowSubscriber,
}

/// What a subscription found when it came for more.
pub(super) enum Took {
    /// Messages were added to its cache; `skipped` fell out of the ring first.
    Some { skipped: u64 },
    /// A private subscription's next message is `seq`, after a gap: it stays
    /// queued (held) until the gap is reported.
    GapBefore { seq: u64 },
    /// Nothing yet: it is parked.
    Parked,
    /// Nothing ever again; `missed` is its final count (private ones).
    End { missed: u64 },
}

impl<T> Shared<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Shared {
            core: Mutex::new(Core {
                ring: VecDeque::new(),
                base: 0,
                tail: 0,
                ring_subs: Slab::new(),
                ring_parked: 0,
                passed: 0,
                private_subs: Slab::new(),
                backpressure: 0,
                floor: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
                end: None,
                policy: SlowSubscriber::Backpressure,
            }),
            capacity,
            tail: Padded::default(),
            wake_at: Padded(AtomicU64::new(u64::MAX)),
            publishes: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            subscribers: AtomicUsize::new(0),
            replay: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            watch: Mutex::new(None),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Core<T>> {
        // A panic under the lock (a message's `Clone`) leaves the state whole:
        // every step below keeps the invariants before it calls user code.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the topic: no more messages; subscriptions drain, then end.
    pub(super) fn close(&self) {
        let mut core = self.lock();
        if core.end.is_some() {
            return;
        }
        core.end = Some(EndReason::Closed);
        self.closed.store(true, Ordering::SeqCst);
        core.wake_everyone();
    }

    /// Aborts the topic: closes it and drops every message it holds.
    pub(super) fn abort(&self, reason: ContextError) {
        let mut core = self.lock();
        if matches!(core.end, Some(EndReason::Cancelled(_))) {
            return;
        }
        core.end = Some(EndReason::Cancelled(reason));
        self.closed.store(true, Ordering::SeqCst);
        self.aborted.store(true, Ordering::SeqCst);
        let ring = std::mem::take(&mut core.ring);
        core.base = core.tail;
        let queues: Vec<_> = core
            .private_subs
            .iter_mut()
            .map(|entry| std::mem::take(&mut entry.queue))
            .collect();
        core.wake_everyone();
        // The messages are dropped after the lock is let go.
        drop(core);
        drop((ring, queues));
    }

    /// Detaches a subscription; what it held is dropped by the caller, after
    /// the lock is let go.
    pub(super) fn unsubscribe(&self, handle: &Handle) -> Option<VecDeque<(u64, T)>> {
        let mut core = self.lock();
        match handle {
            Handle::Ring { id, next, .. } => {
                let entry = core.ring_subs.remove(*id);
                if entry.waker.is_some() {
                    core.ring_parked -= 1;
                }
                if next.is_some() {
                    core.backpressure -= 1;
                }
                if entry.cursor <= core.passed {
                    core.recompute_passed();
                }
                core.pop_unneeded(self.replay.load(Ordering::Relaxed));
                self.subscribers.fetch_sub(1, Ordering::SeqCst);
                // A publisher may have waited for this subscription.
                core.wake_front_waiter();
                None
            }
            Handle::Private { id } => {
                let entry = core.private_subs.remove(*id);
                if !entry.disconnected {
                    self.subscribers.fetch_sub(1, Ordering::SeqCst);
                }
                Some(entry.queue)
            }
            Handle::Detached => None,
        }
    }
}

impl<T> Core<T> {
    pub(super) fn wake_front_waiter(&self) {
        if let Some(front) = self.waiters.front() {
            front.waker.wake_by_ref();
        }
    }

    fn wake_everyone(&mut self) {
        for waiter in &self.waiters {
            waiter.waker.wake_by_ref();
        }
        self.wake_ring_parked();
        for entry in self.private_subs.iter_mut() {
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
        }
    }

    pub(super) fn wake_ring_parked(&mut self) {
        if self.ring_parked == 0 {
            return;
        }
        for entry in self.ring_subs.iter_mut() {
            if let Some(waker) = entry.waker.take() {
                // Waking only schedules the subscription's task.
                waker.wake();
            }
        }
        self.ring_parked = 0;
    }

    /// The final count of a private subscription, or where it stands.
    pub(super) fn private_missed(&self, id: usize) -> u64 {
        self.private_subs.get(id).missed
    }

    /// Why this subscription ends, once it is known.
    pub(super) fn end_reason(&self, handle: &Handle) -> Option<EndReason> {
        match handle {
            Handle::Private { id } if self.private_subs.get(*id).disconnected => {
                Some(EndReason::Disconnected)
            }
            _ => self.end.clone(),
        }
    }
}
