//! The batched hand-off between a pool stream's consumer and its workers.
//!
//! One `std::sync::Mutex` guards the queued input, the finished results and the
//! parked wakers. Each side takes it once per *batch*, never per item and never
//! across an `.await`, and a side is woken only when it is parked waiting and
//! there is a batch's worth (or a deadline's worth) of work for it. A
//! tokio mpsc hop costs about 100 ns per item and wakes the receiver per item;
//! this costs one uncontended lock per batch, which is what lets a parallel
//! pool keep up with `buffer_unordered` on trivial work (see `benches/pool.rs`).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A panic payload caught in a worker, to be resumed in the consumer.
pub(crate) type Panic = Box<dyn Any + Send>;

/// An input item and its sequence number.
pub(crate) type Job<T> = (u64, T);

/// What a worker gets from [`HandOff::poll_take`].
pub(crate) enum Take {
    /// The batch was filled. `woke_consumer` says the worker just woke the
    /// consumer (into its own thread's LIFO slot, on a multi-thread runtime).
    Work { woke_consumer: bool },
    /// Input ended and nothing is left: the worker should return.
    Closed,
}

/// Where each input item goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lanes {
    /// One queue shared by all workers; each takes a fair share.
    Shared,
    /// One queue per worker (keyed pools): worker `i` takes only from lane `i`.
    PerWorker,
}

/// A batch this small is taken whole even when it is more than a fair share.
const SMALL_BATCH: usize = 16;

/// The largest batch: enough to make the per-batch lock and wake-up vanish
/// per item, small enough that the window holds several batches in flight.
const MAX_BATCH: usize = 64;

pub(crate) struct HandOff<T, O> {
    state: Mutex<State<T, O>>,
    /// Items whose sequence number is at or past this are dropped unprocessed;
    /// lowered by the first failure of a fail-fast pool.
    cutoff: AtomicU64,
    /// The batch size the workers' timing last asked for: the consumer wakes
    /// one parked worker per this many queued items, not one per item.
    batch_hint: AtomicUsize,
    /// How many workers can run at the same moment: the fair share of the
    /// queue is split this many ways. More workers than runtime threads only
    /// help calls that wait, and those hand their batch back anyway.
    sharers: usize,
    lanes: Lanes,
    /// Whether an output is a failure that stops a fail-fast pool (`None`:
    /// never, without a call per item).
    fails: Option<fn(&O) -> bool>,
    /// Whether a failure stops only the items after it (ordered) or all of them.
    ordered: bool,
    /// A parked consumer is woken for finished results only once this many
    /// are waiting, or the queue is down to `low_water`, or it has waited
    /// [`MAX_RESULT_DELAY`]: each wake-up costs more than many items.
    wake_at: usize,
    low_water: usize,
}

/// The longest a finished result waits for a parked consumer.
const MAX_RESULT_DELAY: Duration = Duration::from_micros(500);

struct State<T, O> {
    queues: Vec<VecDeque<Job<T>>>,
    done: VecDeque<Job<O>>,
    idle: Vec<Option<Waker>>,
    consumer: Option<Waker>,
    /// When the consumer parked (set with `consumer`).
    parked_at: Option<Instant>,
    /// Ordered pools: the sequence number the consumer must release next.
    head: u64,
    /// Ordered pools: the result for `head` is in `done`.
    head_done: bool,
    input_ended: bool,
    panic: Option<Panic>,
}

impl<T, O> HandOff<T, O> {
    /// `threads` is the runtime's worker thread count; `window` is how many items the consumer lets be pulled and not yet
    /// released.
    pub(crate) fn new(
        workers: usize,
        threads: usize,
        window: usize,
        lanes: Lanes,
        ordered: bool,
        fails: Option<fn(&O) -> bool>,
    ) -> Self {
        let queues = match lanes {
            Lanes::Shared => 1,
            Lanes::PerWorker => workers,
        };
        HandOff {
            state: Mutex::new(State {
                queues: (0..queues).map(|_| VecDeque::new()).collect(),
                done: VecDeque::new(),
                idle: (0..workers).map(|_| None).collect(),
                consumer: None,
                parked_at: None,
                head: 0,
                head_done: false,
                input_ended: false,
                panic: None,
            }),
            cutoff: AtomicU64::new(u64::MAX),
            batch_hint: AtomicUsize::new(1),
            sharers: workers.min(threads).max(1),
            lanes,
            fails,
            ordered,
            wake_at: (window / 4).max(1),
            low_water: window / 2,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, O>> {
        // Nothing panics while holding the lock (user code never runs under it),
        // so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fails(&self, output: &O) -> bool {
        self.fails.is_some_and(|fails| fails(output))
    }

    /// Whether the item numbered `seq` should be dropped unprocessed.
    pub(crate) fn is_cut(&self, seq: u64) -> bool {
        seq >= self.cutoff.load(Ordering::Relaxed)
    }

    /// Whether a failure has stopped intake.
    pub(crate) fn has_failed(&self) -> bool {
        self.cutoff.load(Ordering::Relaxed) != u64::MAX
    }

    /// Records that item `seq` failed: later items (ordered) or all unstarted
    /// items (unordered) will be dropped unprocessed.
    pub(crate) fn fail(&self, seq: u64) {
        let cutoff = if self.ordered { seq + 1 } else { 0 };
        self.cutoff.fetch_min(cutoff, Ordering::Relaxed);
    }

    /// Worker side, one lock per batch: hands over `out`, then takes up to
    /// `limit` queued items into `batch` (the worker's timing says how many
    /// fit in one batch). Unless that is a small batch anyway, it takes at
    /// most a fair share of the queue, in case the timing is stale. Parks
    /// the worker if nothing is queued.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        index: usize,
        out: &mut Vec<Job<O>>,
        urgent: bool,
        batch: &mut Vec<Job<T>>,
        limit: usize,
    ) -> Poll<Take> {
        let mut state = self.lock();
        let flushed = !out.is_empty();
        // Ordered: results are worth a wake-up only once the one the consumer
        // waits for is among them (a batch is at most `MAX_BATCH` long).
        let has_head = self.ordered && out.iter().any(|(seq, _)| *seq == state.head);
        state.head_done |= has_head;
        state.done.extend(out.drain(..));
        let lane = match self.lanes {
            Lanes::Shared => 0,
            Lanes::PerWorker => index,
        };
        let queued = state.queues[lane].len();
        let (poll, consumer) = if queued > 0 {
            let share = match self.lanes {
                Lanes::Shared => queued.div_ceil(self.sharers).clamp(SMALL_BATCH, MAX_BATCH),
                Lanes::PerWorker => queued.min(MAX_BATCH),
            };
            self.batch_hint.store(limit, Ordering::Relaxed);
            batch.extend(state.queues[lane].drain(..share.min(limit).min(queued).max(1)));
            let consumer = self.consumer_to_wake(&mut state, flushed, urgent, lane);
            let woke_consumer = consumer.is_some();
            (Poll::Ready(Take::Work { woke_consumer }), consumer)
        } else {
            let poll = if state.input_ended {
                Poll::Ready(Take::Closed)
            } else {
                let slot = &mut state.idle[index];
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
                Poll::Pending
            };
            // Returning: whatever is done goes to the consumer now. Parking:
            // so does it, unless an ordered consumer still lacks the head
            // (the worker running it will flush it): until then it could
            // neither release results nor take more input.
            let lacks_head = self.ordered && !state.head_done && poll.is_pending();
            let consumer = if state.done.is_empty() || lacks_head {
                None
            } else {
                state.consumer.take()
            };
            (poll, consumer)
        };
        drop(state);
        if let Some(waker) = consumer {
            waker.wake();
        }
        poll
    }

    /// Whether the results just flushed are worth waking the consumer for.
    fn consumer_to_wake(
        &self,
        state: &mut State<T, O>,
        flushed: bool,
        urgent: bool,
        lane: usize,
    ) -> Option<Waker> {
        if !flushed || state.consumer.is_none() {
            return None;
        }
        // Enough results, or a queue running low; ordered, only once the head
        // is done (before that the consumer can release nothing). Waking an
        // ordered consumer for the head alone releases a batch or two per
        // wake-up, and each wake-up costs more than many items.
        let plenty = (!self.ordered || state.head_done)
            && (state.done.len() >= self.wake_at || state.queues[lane].len() <= self.low_water);
        let worth_it = urgent
            || plenty
            || state.input_ended
            || state
                .parked_at
                .is_some_and(|at| at.elapsed() >= MAX_RESULT_DELAY);
        if worth_it {
            state.consumer.take()
        } else {
            None
        }
    }

    /// Worker side, when a call turns out to wait (so a lock is cheap next
    /// to it): hands over `out`, wakes the consumer if results wait, and puts
    /// the rest of the worker's batch back at the front of the queue (in
    /// order), waking a parked worker to take it. Keyed lanes keep their
    /// items, as only their own worker may run them.
    pub(crate) fn give_back(
        &self,
        out: &mut Vec<Job<O>>,
        rest: &mut (impl DoubleEndedIterator<Item = Job<T>> + ExactSizeIterator),
    ) {
        let mut state = self.lock();
        state.done.extend(out.drain(..));
        // Results flushed earlier without a wake-up must not wait on this call.
        let consumer = if state.done.is_empty() {
            None
        } else {
            state.consumer.take()
        };
        let mut idle = None;
        if self.lanes == Lanes::Shared && rest.len() > 0 {
            for job in rest.rev() {
                state.queues[0].push_front(job);
            }
            idle = state.idle.iter_mut().find_map(Option::take);
        }
        drop(state);
        // Two wake-ups from one thread: the second pushes the first out of the
        // LIFO slot onto the stealable run queue.
        for waker in [consumer, idle].into_iter().flatten() {
            waker.wake();
        }
    }

    /// Worker side: a call of the pool's function panicked.
    pub(crate) fn report_panic(&self, panic: Panic) {
        let mut state = self.lock();
        state.panic.get_or_insert(panic);
        let consumer = state.consumer.take();
        drop(state);
        if let Some(waker) = consumer {
            waker.wake();
        }
    }

    /// Consumer side, one lock per batch: queues the `staged` input (one `Vec`
    /// per lane), wakes as many parked workers as there is work for, and swaps
    /// the finished results into `done` (which must be empty). Parks the
    /// consumer if nothing was finished. `head` is the sequence number an
    /// ordered consumer releases next. A worker's panic is returned instead.
    pub(crate) fn exchange(
        &self,
        cx: &mut Context<'_>,
        staged: &mut [Vec<Job<T>>],
        input_ended: bool,
        head: u64,
        done: &mut VecDeque<Job<O>>,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), Panic> {
        debug_assert!(done.is_empty());
        let mut state = self.lock();
        state.head = head;
        if let Some(panic) = state.panic.take() {
            return Err(panic);
        }
        for (queue, items) in state.queues.iter_mut().zip(staged.iter_mut()) {
            queue.extend(items.drain(..));
        }
        state.input_ended |= input_ended;
        let State {
            queues,
            idle,
            input_ended,
            ..
        } = &mut *state;
        match self.lanes {
            Lanes::Shared => {
                // Wake a parked worker per batch there is work for (all of
                // them once input ended, so they can return). For quick
                // calls, no more than can run at once: each wake-up may
                // unpark a thread, and busy workers take more batches anyway.
                // Waking two or more in one go also moves them out of this
                // thread's LIFO slot, so other runtime threads can steal them.
                let per_worker = self.batch_hint.load(Ordering::Relaxed).clamp(1, MAX_BATCH);
                let batches = queues[0].len().div_ceil(per_worker);
                let mut wanted = if *input_ended {
                    usize::MAX
                } else if per_worker >= SMALL_BATCH {
                    batches.min(self.sharers)
                } else {
                    batches
                };
                for slot in idle.iter_mut() {
                    if wanted == 0 {
                        break;
                    }
                    if let Some(waker) = slot.take() {
                        wakers.push(waker);
                        wanted -= 1;
                    }
                }
            }
            Lanes::PerWorker => {
                for (slot, queue) in idle.iter_mut().zip(queues.iter()) {
                    if *input_ended || !queue.is_empty() {
                        wakers.extend(slot.take());
                    }
                }
            }
        }
        std::mem::swap(done, &mut state.done);
        state.head_done = false;
        if done.is_empty() {
            let slot = &mut state.consumer;
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
            state.parked_at = Some(Instant::now());
        }
        drop(state);
        for waker in wakers.drain(..) {
            waker.wake();
        }
        Ok(())
    }
}
