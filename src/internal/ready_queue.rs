//! A ready queue over many inner streams or futures: each gets a waker of its
//! own that marks its index when woken, so the owner polls only the inputs
//! that can make progress — O(woken) per wake-up instead of O(all) — and in
//! rounds, each woken input once per round, which is fair.
//!
//! The same idea as `FuturesUnordered`'s, in safe code and without allocating
//! or locking: a wake-up sets one bit in a shared word of 64 and, if it was
//! the first, wakes the owner. The owner keeps its queue to itself, so an
//! input that yields an item is queued again with no atomic operation.
//!
//! # Invariants
//!
//! 1. **No lost wake-up.** An input's waker sets its bit, and only the waker
//!    that turned the bit on (`fetch_or` saw it off) raises `any_woken` and
//!    wakes the owner — after setting the bit, so an owner that sees
//!    `any_woken` (acquire) sees the bit. The owner lowers `any_woken`
//!    *before* it swaps the words to zero: a bit set after the swap raises
//!    the flag again, so it is collected next round, never dropped.
//!
//!    `any_woken` is raised with a read-modify-write (`swap(true, AcqRel)`),
//!    not a plain store, and that is what makes "sees the flag, sees the bit"
//!    hold for *every* waker that raised it, not only the last. Two wakers A
//!    and B may have their flag writes in one order (B's, then A's) and their
//!    `fetch_or`s on the word in the other. An owner whose `swap(false)`
//!    reads A's write synchronizes with A; with plain stores it does not
//!    synchronize with B, so its swap of the word may come before B's
//!    `fetch_or` — B's bit stays set, B's flag is already lowered, B's
//!    wake-up is spent, and B's bit never raises the flag again: B is lost.
//!    A read-modify-write of A reads B's write and so continues B's *release
//!    sequence*: reading A's write then synchronizes with B as well, and the
//!    owner's swap of the word sees B's bit. (The model with two wakers,
//!    below, deadlocks with the plain store.)
//! 2. **Park, then look.** Before returning `Pending` the owner registers its
//!    waker and then checks [`ReadyQueue::has_queued`]: a wake-up that came
//!    before the registration is seen by the check, one after it wakes the
//!    registered waker.
//! 3. **Queued once.** An index is in the ring at most once (`Slot::queued`),
//!    so the ring never needs more room than there are slots: pushing never
//!    allocates. A stale bit of a removed (or reused) index costs at most one
//!    spurious poll.
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`).

use std::task::{Wake, Waker};

use crate::internal::sync::{Arc, AtomicBool, AtomicU64, AtomicWaker, Ordering};

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

// `Waker::from` takes a `std` `Arc`: the entry lives in one; what it points
// to is the shim's.
impl Wake for Entry {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        if self.word.fetch_or(self.bit, Ordering::AcqRel) & self.bit == 0 {
            // A read-modify-write, not a store: it carries the release
            // sequence of an earlier waker's write (invariant 1).
            self.shared.any_woken.swap(true, Ordering::AcqRel);
            self.shared.owner.wake();
        }
    }
}

/// One input and its waker.
pub(crate) struct Slot<T> {
    /// `None` once the input is gone; the slot is then reused.
    pub(crate) value: Option<T>,
    pub(crate) waker: Waker,
    /// In the queue already: queued once however often it is woken.
    queued: bool,
}

/// The inputs, and which of them to poll next. Indices are reused once an
/// input is removed; a stale wake-up of a reused index costs one spurious poll.
pub(crate) struct ReadyQueue<T> {
    shared: Arc<Shared>,
    words: Vec<Arc<AtomicU64>>,
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    queue: Ring,
}

/// Wakes the owner of a [`ReadyQueue`] from anywhere.
#[derive(Clone)]
pub(crate) struct OwnerWaker(Arc<Shared>);

impl OwnerWaker {
    pub(crate) fn wake(&self) {
        self.0.owner.wake();
    }
}

impl<T> ReadyQueue<T> {
    pub(crate) fn new() -> Self {
        ReadyQueue {
            shared: Arc::new(Shared {
                any_woken: AtomicBool::new(false),
                owner: AtomicWaker::new(),
            }),
            words: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            queue: Ring::default(),
        }
    }

    /// Adds an input, queued to be polled.
    pub(crate) fn insert(&mut self, value: T) {
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index].value = Some(value);
                index
            }
            None => self.grow(value),
        };
        self.requeue(index);
    }

    fn grow(&mut self, value: T) -> usize {
        let index = self.slots.len();
        if index % BITS == 0 {
            self.words.push(Arc::new(AtomicU64::new(0)));
        }
        let entry = std::sync::Arc::new(Entry {
            word: Arc::clone(&self.words[index / BITS]),
            bit: 1 << (index % BITS),
            shared: Arc::clone(&self.shared),
        });
        self.slots.push(Slot {
            value: Some(value),
            waker: Waker::from(entry),
            queued: false,
        });
        self.queue.reserve(self.slots.len());
        index
    }

    /// Drops the input at `index`; its index may be handed out again.
    pub(crate) fn remove(&mut self, index: usize) {
        self.slots[index].value = None;
        self.free.push(index);
    }

    pub(crate) fn slot(&mut self, index: usize) -> &mut Slot<T> {
        &mut self.slots[index]
    }

    /// Every input still present.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref())
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
    #[inline]
    pub(crate) fn start_round(&mut self) -> usize {
        if self.shared.any_woken.load(Ordering::Relaxed) {
            self.collect_woken();
        }
        self.queue.len
    }

    #[cold]
    #[inline(never)]
    fn collect_woken(&mut self) {
        if !self.shared.any_woken.swap(false, Ordering::AcqRel) {
            return;
        }
        for w in 0..self.words.len() {
            if self.words[w].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = self.words[w].swap(0, Ordering::AcqRel);
            while bits != 0 {
                let index = w * BITS + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if self.slots[index].value.is_some() {
                    self.requeue(index);
                }
            }
        }
    }

    /// Whether any input waits to be polled.
    pub(crate) fn has_queued(&self) -> bool {
        self.queue.len > 0 || self.shared.any_woken.load(Ordering::Acquire)
    }

    /// The next input to poll, oldest-queued first.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<usize> {
        while let Some(index) = self.queue.pop() {
            let slot = &mut self.slots[index];
            slot.queued = false;
            if slot.value.is_some() {
                return Some(index);
            }
        }
        None
    }

    /// Queues the input at `index` (one that just yielded and may have
    /// more) behind the others that are queued.
    #[inline]
    pub(crate) fn requeue(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.queued {
            slot.queued = true;
            self.queue.push(index);
        }
    }
}

/// A FIFO of slot indices. Each index is in it at most once, so it never
/// needs more room than there are slots: pushing never allocates.
#[derive(Default)]
struct Ring {
    buf: Vec<usize>,
    head: usize,
    len: usize,
}

impl Ring {
    /// Room for `capacity` indices (called as slots are added).
    fn reserve(&mut self, capacity: usize) {
        if capacity <= self.buf.len() {
            return;
        }
        let mut buf = Vec::with_capacity(capacity.next_power_of_two());
        buf.extend((0..self.len).map(|i| self.buf[(self.head + i) % self.buf.len()]));
        buf.resize(buf.capacity(), 0);
        self.buf = buf;
        self.head = 0;
    }

    #[inline]
    fn push(&mut self, index: usize) {
        let mask = self.buf.len() - 1;
        self.buf[(self.head + self.len) & mask] = index;
        self.len += 1;
    }

    #[inline]
    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let index = self.buf[self.head];
        self.head = (self.head + 1) & (self.buf.len() - 1);
        self.len -= 1;
        Some(index)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use futures::StreamExt;
    use loom::future::block_on;
    use loom::thread;

    use crate::fan_in::FanIn;
    use crate::internal::sync::model::{Chan, builder};

    /// Invariants 1 and 2, through `FanIn`, the queue's owner: inputs woken
    /// from other threads while the owner collects, polls and parks are all
    /// polled — every item arrives, the merged stream ends, nobody hangs.
    #[test]
    fn loom_wake_ups_from_one_other_thread_are_never_lost() {
        builder().check(|| {
            let input = Chan::new();
            let merged: FanIn<Chan<u32>> = [input.clone()].into_iter().collect();
            let producer = thread::spawn(move || {
                input.send(1);
                input.close();
            });
            assert_eq!(block_on(merged.collect::<Vec<u32>>()), [1]);
            producer.join().unwrap();
        });
    }

    /// Two inputs (two bits of one word) woken from two threads: invariant 1
    /// with two wakers, whose flag writes and bit writes may be ordered
    /// differently.
    /// Needs `any_woken` raised with a read-modify-write (invariant 1): with
    /// a plain store, loom finds the lost wake-up.
    #[test]
    fn loom_wake_ups_from_other_threads_are_never_lost() {
        builder().check(|| {
            let inputs = [Chan::new(), Chan::new()];
            let merged: FanIn<Chan<u32>> = inputs.iter().cloned().collect();
            let producers: Vec<_> = inputs
                .into_iter()
                .zip(1..)
                .map(|(input, item)| {
                    thread::spawn(move || {
                        input.send(item);
                        input.close();
                    })
                })
                .collect();
            let mut got = block_on(merged.collect::<Vec<u32>>());
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            producers
                .into_iter()
                .for_each(|producer| producer.join().unwrap());
        });
    }
}
