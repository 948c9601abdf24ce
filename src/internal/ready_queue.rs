//! A ready queue over many inner streams or futures: each gets a waker of its
//! own that queues its index when woken, so the owner polls only the inputs
//! that can make progress — O(ready) per wake-up instead of O(all) — and in
//! first-woken, first-polled order, which is fair.
//!
//! The same idea as `FuturesUnordered`'s, in safe code and without allocating
//! per item: an input that yields an item is queued again at the back by the
//! owner, without a wake-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use futures::task::AtomicWaker;

/// Wake-ups from other tasks, and the owner's task to tell about them.
struct Shared {
    woken: Mutex<Vec<usize>>,
    any_woken: AtomicBool,
    owner: AtomicWaker,
}

/// The waker of one input.
struct Entry {
    index: usize,
    /// Set while the index sits in a queue, so it is queued once however
    /// often it is woken.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for Entry {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared
                .woken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.index);
            self.shared.any_woken.store(true, Ordering::Release);
            self.shared.owner.wake();
        }
    }
}

struct Slot {
    entry: Arc<Entry>,
    waker: Waker,
    occupied: bool,
}

/// The owner's side: which inputs to poll next. Indices are reused once
/// removed; a stale wake-up of a reused index only costs one spurious poll.
pub(crate) struct ReadyQueue {
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Indices to poll, in order. Only the owner touches it: no lock per item.
    ready: VecDeque<usize>,
}

/// Wakes the owner of a [`ReadyQueue`] from anywhere.
#[derive(Clone)]
pub(crate) struct OwnerWaker(Arc<Shared>);

impl OwnerWaker {
    pub(crate) fn wake(&self) {
        self.0.owner.wake();
    }
}

impl ReadyQueue {
    pub(crate) fn new() -> Self {
        ReadyQueue {
            shared: Arc::new(Shared {
                woken: Mutex::new(Vec::new()),
                any_woken: AtomicBool::new(false),
                owner: AtomicWaker::new(),
            }),
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// A new input, ready to be polled first thing. Returns its index.
    pub(crate) fn insert(&mut self) -> usize {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = self.slots.len();
                let entry = Arc::new(Entry {
                    index,
                    queued: AtomicBool::new(false),
                    shared: Arc::clone(&self.shared),
                });
                let waker = Waker::from(Arc::clone(&entry));
                self.slots.push(Slot {
                    entry,
                    waker,
                    occupied: false,
                });
                index
            }
        };
        let slot = &mut self.slots[index];
        slot.occupied = true;
        slot.entry.queued.store(true, Ordering::Release);
        self.ready.push_back(index);
        index
    }

    /// The input at `index` is gone; its index may be handed out again.
    pub(crate) fn remove(&mut self, index: usize) {
        self.slots[index].occupied = false;
        self.free.push(index);
    }

    /// The waker to poll the input at `index` with.
    pub(crate) fn waker(&self, index: usize) -> &Waker {
        &self.slots[index].waker
    }

    /// Remembers the owner's waker: call at the start of every poll.
    pub(crate) fn register(&self, owner: &Waker) {
        self.shared.owner.register(owner);
    }

    pub(crate) fn owner_waker(&self) -> OwnerWaker {
        OwnerWaker(Arc::clone(&self.shared))
    }

    /// Starts a round of polls: inputs woken since the last round join the
    /// back of the line. Returns how many inputs are queued; the owner polls
    /// at most that many before returning, because an input that wakes
    /// itself while polled (as a Tokio resource out of budget does) would
    /// otherwise keep it busy forever.
    pub(crate) fn start_round(&mut self) -> usize {
        if self.shared.any_woken.swap(false, Ordering::Acquire) {
            let mut woken = self.shared.woken.lock().unwrap_or_else(|e| e.into_inner());
            self.ready.extend(woken.drain(..));
        }
        self.ready.len()
    }

    /// Whether any input waits to be polled.
    pub(crate) fn has_queued(&self) -> bool {
        !self.ready.is_empty() || self.shared.any_woken.load(Ordering::Acquire)
    }

    /// The next input to poll, oldest-queued first.
    pub(crate) fn pop(&mut self) -> Option<usize> {
        while let Some(index) = self.ready.pop_front() {
            let slot = &self.slots[index];
            // Cleared before the poll: a wake-up during it queues the input again.
            slot.entry.queued.store(false, Ordering::Release);
            if slot.occupied {
                return Some(index);
            }
        }
        None
    }

    /// The input at `index` just yielded and may have more: poll it again
    /// after the others that are ready.
    pub(crate) fn requeue(&mut self, index: usize) {
        if !self.slots[index].entry.queued.swap(true, Ordering::AcqRel) {
            self.ready.push_back(index);
        }
    }
}
