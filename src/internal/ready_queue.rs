//! A ready queue over many inner streams or futures: each gets a waker of its
//! own that marks its index when woken, so the owner polls only the inputs
//! that can make progress — O(woken) per wake-up instead of O(all) — and in
//! rounds, each woken input once per round, which is fair.
//!
//! The same idea as `FuturesUnordered`'s, in safe code and without allocating
//! or locking: a wake-up sets one bit in a shared word of 64 and, if it was
//! the first, wakes the owner. The owner keeps its queue to itself, so an
//! input that yields an item is queued again with no atomic operation.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Wake, Waker};

use futures::task::AtomicWaker;

const BITS: usize = u64::BITS as usize;

/// What wakers share with the owner.
struct Shared {
    /// Some bit was set since the owner last collected them.
    any_woken: AtomicBool,
    owner: AtomicWaker,
}

/// The waker of one input: a bit in a word of 64.
struct Entry {
    word: Arc<AtomicU64>,
    bit: u64,
    shared: Arc<Shared>,
}

impl Wake for Entry {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.word.fetch_or(self.bit, Ordering::AcqRel) & self.bit == 0 {
            self.shared.any_woken.store(true, Ordering::Release);
            self.shared.owner.wake();
        }
    }
}

struct Slot {
    waker: Waker,
    occupied: bool,
    /// In `ready` already: queued once however often it is woken.
    queued: bool,
}

/// The owner's side: which inputs to poll next. Indices are reused once
/// removed; a stale wake-up of a reused index only costs one spurious poll.
pub(crate) struct ReadyQueue {
    shared: Arc<Shared>,
    words: Vec<Arc<AtomicU64>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
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
                any_woken: AtomicBool::new(false),
                owner: AtomicWaker::new(),
            }),
            words: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// A new input, queued to be polled. Returns its index.
    pub(crate) fn insert(&mut self) -> usize {
        let index = self.free.pop().unwrap_or_else(|| {
            let index = self.slots.len();
            if index % BITS == 0 {
                self.words.push(Arc::new(AtomicU64::new(0)));
            }
            let entry = Arc::new(Entry {
                word: Arc::clone(&self.words[index / BITS]),
                bit: 1 << (index % BITS),
                shared: Arc::clone(&self.shared),
            });
            self.slots.push(Slot {
                waker: Waker::from(entry),
                occupied: false,
                queued: false,
            });
            index
        });
        self.slots[index].occupied = true;
        self.requeue(index);
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

    /// Remembers the owner's waker. Call before returning `Pending`, then
    /// check [`has_queued`](Self::has_queued) for wake-ups that came before it.
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
        if self.shared.any_woken.load(Ordering::Relaxed)
            && self.shared.any_woken.swap(false, Ordering::AcqRel)
        {
            for (w, word) in self.words.iter().enumerate() {
                if word.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let mut bits = word.swap(0, Ordering::AcqRel);
                while bits != 0 {
                    let index = w * BITS + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let slot = &mut self.slots[index];
                    if slot.occupied && !slot.queued {
                        slot.queued = true;
                        self.ready.push_back(index);
                    }
                }
            }
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
            let slot = &mut self.slots[index];
            slot.queued = false;
            if slot.occupied {
                return Some(index);
            }
        }
        None
    }

    /// The input at `index` just yielded and may have more: poll it again
    /// after the others that are queued.
    pub(crate) fn requeue(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.queued {
            slot.queued = true;
            self.ready.push_back(index);
        }
    }
}
