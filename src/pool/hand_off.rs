//! The batched hand-off between a pool stream's consumer and its workers.
//!
//! One `std::sync::Mutex` guards the queued input, the finished results and the
//! parked wakers. Each side takes it once per *batch*, never per item and never
//! across an `.await`, and a side is woken only when it is parked waiting and
//! there is a batch's worth (or a deadline's worth) of work for it. A
//! tokio mpsc hop costs about 100 ns per item and wakes the receiver per item;
//! this costs one uncontended lock per batch, which is what lets a parallel
//! pool keep up with `buffer_unordered` on trivial work (see `benches/pool.rs`).
//!
//! # Invariants
//!
//! 1. **No item is lost.** Every item the consumer queues is, exactly once,
//!    either run by one worker with its result handed over, or *cut* (its
//!    sequence number is at or past the cutoff a fail-fast pool set, so no
//!    result is needed for it), or dropped with the whole pool (cancel, drop,
//!    panic). A worker never drops an item it took and did not run: it runs
//!    it, puts it on its shelf for others (invariant 3), or skips it as cut.
//! 2. **Oldest first.** Each lane's queue is in sequence order (only the
//!    consumer adds to it, newer items at the back), a batch is a run from its
//!    front, and a shelf holds what is left of one batch, in order. A thief
//!    takes from a shelf's front.
//! 3. **Nothing waits behind a pending call.** Before a worker awaits a call
//!    that returned `Pending`, it hands over its finished results and puts the
//!    unstarted rest of its batch on its *shelf* ([`HandOff::shelve`]),
//!    waking a parked worker to take it. If a parked consumer could release
//!    a result (unordered: any; ordered: the head) — also one flushed earlier
//!    without a wake-up — the worker wakes it unless the call finishes within
//!    one scheduler turn (a yield), so it never waits on a call that waits. A worker that
//!    finds the queue empty takes from other workers' shelves before it
//!    parks; the owner takes back what is left when its call is done
//!    ([`HandOff::unshelve`]). Putting a batch on a shelf is a swap, so a
//!    call that only yields costs no more than a lock. Keyed lanes keep their
//!    rest: only their own worker may run it, in order.
//! 4. **No lost wake-up.** A side parks (stores its waker) under the state
//!    lock only after finding nothing to do under that same lock (queue and
//!    shelves); a side that makes work for a parked side (queues, shelves,
//!    flushes results) does so under that lock, takes the parked side's
//!    waker there and wakes it after unlocking. A results batch may be
//!    flushed without a wake-up only while its worker goes on running quick
//!    calls (one wake-up costs more than many trivial items); invariant 3,
//!    parking and returning all wake.
//! 5. **A panic is never lost.** A panic caught in a worker is stored here and
//!    wakes the consumer, which resumes it before releasing anything else at
//!    its next exchange, and, whatever else ends the pool (input end, failure,
//!    cancel), after joining the workers and before its last item.
//! 6. **No call starts after a cancel.** Cancelling the pool's context raises
//!    a flag inside `cancel()` itself (see
//!    [`CancelWatch`](crate::internal::cancel_watch::CancelWatch)); a worker
//!    reads it, one atomic load, before every call and every batch.
//! 7. **A worker returns only when no item can come to it**: the input has
//!    ended, its queue is empty, and (shared queue) no worker holds taken
//!    items, run or shelved. Workers report what they hold (`lent`), so one
//!    blocked in a call cannot strand the rest of its batch after the others
//!    have returned.
//! 8. **Lock order**: the state lock, then a shelf's. An owner takes its own
//!    shelf back holding that shelf's lock alone. User code never runs under
//!    a lock.
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`), with the
//! real worker loop (`worker.rs`): invariants 1, 3, 4, 5 and 7. The clock is
//! frozen there, so the models also show that no wake-up depends on a delay
//! running out. Invariant 6 rests on `CancelWatch`'s own model.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::internal::cancel_watch::CancelHint;
use crate::internal::sync::{AtomicU64, AtomicUsize, Instant, Mutex, MutexGuard, Ordering};

/// A panic payload caught in a worker, to be resumed in the consumer.
pub(crate) type Panic = Box<dyn Any + Send>;

/// An input item and its sequence number.
pub(crate) type Job<T> = (u64, T);

/// What a worker gets from [`HandOff::poll_take`].
pub(crate) enum Take {
    /// The batch was filled. `woke_consumer` says the worker just woke the
    /// consumer (into its own thread's LIFO slot, on a multi-thread runtime);
    /// `owes_wake` that it flushed results a parked consumer could release
    /// without waking it, so it must before it awaits anything (invariant 3).
    Work {
        woke_consumer: bool,
        owes_wake: bool,
    },
    /// Input ended and nothing is left, or the pool was cancelled: the worker
    /// should return.
    Closed,
}

/// What a worker holds between two visits to the hand-off.
pub(crate) struct Hands<T, O> {
    /// The items it took, run in order from the front.
    pub(crate) batch: VecDeque<Job<T>>,
    /// Results not yet handed over.
    pub(crate) out: Vec<Job<O>>,
    /// How many of the items it took are not yet reported finished (the
    /// hand-off's `lent` counts them), shelved ones included.
    pub(crate) held: usize,
    /// How many items it put on its shelf.
    pub(crate) shelved: usize,
}

impl<T, O> Hands<T, O> {
    pub(crate) fn new() -> Self {
        Hands {
            batch: VecDeque::new(),
            out: Vec::new(),
            held: 0,
            shelved: 0,
        }
    }
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

/// The longest a finished result waits for a parked consumer when workers
/// come back for more work without anything pending in between.
const MAX_RESULT_DELAY: Duration = Duration::from_micros(500);

/// How workers learn, without a lock, that the pool's context was cancelled.
pub(crate) struct Stop {
    /// Raised inside the context's `cancel()`.
    pub(crate) hint: CancelHint,
    pub(crate) token: CancellationToken,
}

pub(crate) struct HandOff<T, O> {
    state: Mutex<State<T, O>>,
    /// Per worker: the unstarted rest of its batch while it awaits a pending
    /// call (invariant 3).
    shelves: Box<[Mutex<VecDeque<Job<T>>>]>,
    /// How many shelves may hold items: raised under the state lock when one
    /// is filled, lowered when its owner takes it back.
    shelved: AtomicUsize,
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
    /// [`MAX_RESULT_DELAY`], or a worker is about to wait: each wake-up costs
    /// more than many trivial items.
    wake_at: usize,
    low_water: usize,
    stop: Option<Stop>,
}

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
    /// Items taken by workers and not yet finished or handed back.
    lent: usize,
    panic: Option<Panic>,
}

/// The settings of a [`HandOff`].
pub(crate) struct Setup<O> {
    pub(crate) workers: usize,
    /// The runtime's worker thread count.
    pub(crate) threads: usize,
    /// How many items the consumer lets be pulled and not yet released.
    pub(crate) window: usize,
    pub(crate) lanes: Lanes,
    pub(crate) ordered: bool,
    pub(crate) fails: Option<fn(&O) -> bool>,
    pub(crate) stop: Option<Stop>,
}

impl<T, O> HandOff<T, O> {
    pub(crate) fn new(setup: Setup<O>) -> Self {
        let queues = match setup.lanes {
            Lanes::Shared => 1,
            Lanes::PerWorker => setup.workers,
        };
        HandOff {
            state: Mutex::new(State {
                queues: (0..queues).map(|_| VecDeque::new()).collect(),
                done: VecDeque::new(),
                idle: (0..setup.workers).map(|_| None).collect(),
                consumer: None,
                parked_at: None,
                head: 0,
                head_done: false,
                input_ended: false,
                lent: 0,
                panic: None,
            }),
            shelves: (0..setup.workers)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            shelved: AtomicUsize::new(0),
            cutoff: AtomicU64::new(u64::MAX),
            batch_hint: AtomicUsize::new(1),
            sharers: setup.workers.min(setup.threads).max(1),
            lanes: setup.lanes,
            fails: setup.fails,
            ordered: setup.ordered,
            wake_at: (setup.window / 4).max(1),
            low_water: setup.window / 2,
            stop: setup.stop,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, O>> {
        lock(&self.state)
    }

    pub(crate) fn fails(&self, output: &O) -> bool {
        self.fails.is_some_and(|fails| fails(output))
    }

    /// Whether the pool's context was cancelled: one atomic load while it
    /// was not (invariant 6).
    pub(crate) fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.hint.raised() && stop.token.is_cancelled())
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

    /// Moves `out` into the shared results; returns whether there were any.
    fn flush(&self, state: &mut State<T, O>, out: &mut Vec<Job<O>>) -> bool {
        if out.is_empty() {
            return false;
        }
        if self.ordered && !state.head_done {
            let head = state.head;
            state.head_done = out.iter().any(|(seq, _)| *seq == head);
        }
        state.done.extend(out.drain(..));
        true
    }

    /// Whether a parked consumer could release a result now.
    fn deliverable(&self, state: &State<T, O>) -> bool {
        !state.done.is_empty() && (!self.ordered || state.head_done)
    }

    /// Worker side, one lock per batch: hands over `hands.out` (the results
    /// of the items it held), then takes up to `limit` queued items into
    /// `hands.batch` (the worker's timing says how many fit in one batch).
    /// Unless that is a small batch anyway, it takes at most a fair share of
    /// the queue, in case the timing is stale. With the queue empty it takes
    /// from another worker's shelf; with nothing anywhere it parks the worker.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        index: usize,
        hands: &mut Hands<T, O>,
        urgent: bool,
        limit: usize,
    ) -> Poll<Take> {
        if self.stopped() {
            return Poll::Ready(Take::Closed);
        }
        debug_assert!(hands.batch.is_empty() && hands.shelved == 0);
        let mut state = self.lock();
        state.lent -= std::mem::take(&mut hands.held);
        // A slot left from an earlier park would steal wake-ups meant for
        // workers that really are parked.
        state.idle[index] = None;
        let flushed = self.flush(&mut state, &mut hands.out);
        let lane = match self.lanes {
            Lanes::Shared => 0,
            Lanes::PerWorker => index,
        };
        let queued = state.queues[lane].len();
        let taken = if queued > 0 {
            let share = match self.lanes {
                Lanes::Shared => queued.div_ceil(self.sharers).clamp(SMALL_BATCH, MAX_BATCH),
                Lanes::PerWorker => queued.min(MAX_BATCH),
            };
            self.batch_hint.store(limit, Ordering::Relaxed);
            let taken = share.min(limit).min(queued).max(1);
            hands.batch.extend(state.queues[lane].drain(..taken));
            state.lent += taken;
            taken
        } else if self.lanes == Lanes::Shared && self.shelved.load(Ordering::Relaxed) > 0 {
            // Already lent (to the shelf's owner): only who holds them changes.
            self.steal(index, &mut hands.batch, limit.clamp(1, MAX_BATCH))
        } else {
            0
        };
        let mut closing = Vec::new();
        let (poll, consumer) = if taken > 0 {
            hands.held = taken;
            let consumer = self.consumer_to_wake(&mut state, flushed, urgent, lane);
            let woke_consumer = consumer.is_some();
            let owes_wake = !woke_consumer && state.consumer.is_some() && self.deliverable(&state);
            let work = Take::Work {
                woke_consumer,
                owes_wake,
            };
            (Poll::Ready(work), consumer)
        } else {
            // Keyed lanes are only ever refilled by the consumer.
            let drained = self.lanes == Lanes::PerWorker || state.lent == 0;
            let poll = if state.input_ended && drained {
                // Let the other parked workers return too.
                closing.extend(state.idle.iter_mut().filter_map(Option::take));
                Poll::Ready(Take::Closed)
            } else {
                state.idle[index] = Some(cx.waker().clone());
                Poll::Pending
            };
            // Returning or parking: whatever the consumer can release goes to
            // it now (ordered: not before the head is done — until then it
            // could neither release results nor take more input).
            let consumer = if self.deliverable(&state) {
                state.consumer.take()
            } else {
                None
            };
            (poll, consumer)
        };
        drop(state);
        for waker in consumer.into_iter().chain(closing) {
            waker.wake();
        }
        poll
    }

    /// Takes up to `most` items from the front of another worker's shelf.
    /// Called under the state lock (lock order: state, then shelf).
    fn steal(&self, thief: usize, batch: &mut VecDeque<Job<T>>, most: usize) -> usize {
        let workers = self.shelves.len();
        for owner in (1..workers).map(|step| (thief + step) % workers) {
            let mut shelf = lock(&self.shelves[owner]);
            if !shelf.is_empty() {
                let taken = most.min(shelf.len());
                batch.extend(shelf.drain(..taken));
                return taken;
            }
        }
        0
    }

    /// Whether the results just flushed are worth waking the consumer for.
    fn consumer_to_wake(
        &self,
        state: &mut State<T, O>,
        flushed: bool,
        urgent: bool,
        lane: usize,
    ) -> Option<Waker> {
        if !flushed || state.consumer.is_none() || !self.deliverable(state) {
            return None;
        }
        // Enough results, or a queue running low. Waking an ordered consumer
        // for the head alone releases a batch or two per wake-up, and each
        // wake-up costs more than many items.
        let plenty = state.done.len() >= self.wake_at || state.queues[lane].len() <= self.low_water;
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

    /// Worker side, before it awaits a call that returned `Pending`
    /// (invariant 3): hands over `hands.out` and puts the rest of the batch on
    /// the worker's shelf (a swap), waking a parked worker to take it. Keyed
    /// lanes keep their items, as only their own worker may run them.
    ///
    /// Returns whether a parked consumer could release a result now: the
    /// worker then gives its call one scheduler turn (a call that only yields
    /// is done by then, and the next hand-over carries the wake-up), and calls
    /// [`wake_consumer`](Self::wake_consumer) before it waits any longer. A
    /// wake-up per yield would cost more than the yield.
    pub(crate) fn shelve(&self, index: usize, hands: &mut Hands<T, O>) -> bool {
        let mut state = self.lock();
        self.flush(&mut state, &mut hands.out);
        let owes_wake = state.consumer.is_some() && self.deliverable(&state);
        let mut idle = None;
        if self.lanes == Lanes::Shared && !hands.batch.is_empty() {
            let mut shelf = lock(&self.shelves[index]);
            debug_assert!(shelf.is_empty(), "a shelf holds one batch");
            std::mem::swap(&mut *shelf, &mut hands.batch);
            hands.shelved = shelf.len();
            drop(shelf);
            self.shelved.fetch_add(1, Ordering::Relaxed);
            idle = state.idle.iter_mut().find_map(Option::take);
        }
        drop(state);
        if let Some(waker) = idle {
            waker.wake();
        }
        owes_wake
    }

    /// Worker side: wakes the consumer if it is parked and can release a
    /// result (see [`shelve`](Self::shelve)).
    pub(crate) fn wake_consumer(&self) {
        let mut state = self.lock();
        let consumer = if self.deliverable(&state) {
            state.consumer.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = consumer {
            waker.wake();
        }
    }

    /// Whether [`shelve`](Self::shelve) has anything to do for `hands`.
    pub(crate) fn must_shelve(&self, hands: &Hands<T, O>, owes_wake: bool) -> bool {
        owes_wake
            || !hands.out.is_empty()
            || (self.lanes == Lanes::Shared && !hands.batch.is_empty())
    }

    /// Worker side, once the call it shelved its batch for is done: takes
    /// back what no other worker took (those now count as theirs).
    pub(crate) fn unshelve(&self, index: usize, hands: &mut Hands<T, O>) {
        if hands.shelved == 0 {
            return;
        }
        let mut shelf = lock(&self.shelves[index]);
        std::mem::swap(&mut *shelf, &mut hands.batch);
        drop(shelf);
        self.shelved.fetch_sub(1, Ordering::Relaxed);
        let stolen = hands.shelved - hands.batch.len();
        hands.held -= stolen;
        hands.shelved = 0;
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

    /// Consumer side: the panic a worker caught, if any.
    pub(crate) fn take_panic(&self) -> Option<Panic> {
        self.lock().panic.take()
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
        if let Some(panic) = state.panic.take() {
            return Err(panic);
        }
        state.head = head;
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

/// Nothing panics while holding a lock here (user code never runs under
/// one), so a poisoned lock still holds consistent state.
fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::task::{Context, Poll};

    use super::{HandOff, Hands, Lanes, Setup, Take};
    use crate::internal::wake_counter::WakeCounter;

    fn shared_pool(workers: usize) -> HandOff<u32, u32> {
        HandOff::new(Setup {
            workers,
            threads: 2,
            window: 64,
            lanes: Lanes::Shared,
            ordered: false,
            fails: None,
            stop: None,
        })
    }

    /// The consumer queues `items` and says the input ended.
    fn queue_all(pool: &HandOff<u32, u32>, items: impl IntoIterator<Item = u32>) {
        let consumer = WakeCounter::new();
        let mut staged = vec![items.into_iter().map(|x| (u64::from(x), x)).collect()];
        let mut done = VecDeque::new();
        let exchanged = pool.exchange(
            &mut Context::from_waker(&consumer.waker()),
            &mut staged,
            true,
            0,
            &mut done,
            &mut Vec::new(),
        );
        assert!(exchanged.is_ok());
    }

    fn take(pool: &HandOff<u32, u32>, index: usize, hands: &mut Hands<u32, u32>) -> Poll<Take> {
        let waker = WakeCounter::new().waker();
        pool.poll_take(&mut Context::from_waker(&waker), index, hands, false, 64)
    }

    /// Runs the batch's front item (its result goes to `out`).
    fn run_one(hands: &mut Hands<u32, u32>) {
        let (seq, x) = hands.batch.pop_front().expect("an item");
        hands.out.push((seq, x));
    }

    #[test]
    fn a_shelved_batch_is_stolen_by_a_worker_with_nothing_queued() {
        let pool = shared_pool(2);
        queue_all(&pool, 0..10);
        let (mut a, mut b) = (Hands::new(), Hands::new());
        assert!(matches!(
            take(&pool, 0, &mut a),
            Poll::Ready(Take::Work { .. })
        ));
        assert_eq!(a.batch.len(), 10);
        // Worker 0's first call is pending: the other nine go on its shelf.
        run_one(&mut a);
        pool.shelve(0, &mut a);
        assert!(a.batch.is_empty());
        // Worker 1 finds the queue empty and takes them from the shelf.
        assert!(matches!(
            take(&pool, 1, &mut b),
            Poll::Ready(Take::Work { .. })
        ));
        assert_eq!(
            b.batch.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..10).collect::<Vec<_>>()
        );
        while !b.batch.is_empty() {
            run_one(&mut b);
        }
        // Worker 0 still holds its pending call: worker 1 must not return.
        assert!(take(&pool, 1, &mut b).is_pending());
        pool.unshelve(0, &mut a);
        assert!(a.batch.is_empty(), "all of it was taken");
        assert!(matches!(take(&pool, 0, &mut a), Poll::Ready(Take::Closed)));
        assert!(matches!(take(&pool, 1, &mut b), Poll::Ready(Take::Closed)));
    }

    #[test]
    fn an_owner_takes_back_what_no_one_stole() {
        let pool = shared_pool(2);
        queue_all(&pool, 0..5);
        let mut a = Hands::new();
        assert!(matches!(
            take(&pool, 0, &mut a),
            Poll::Ready(Take::Work { .. })
        ));
        run_one(&mut a);
        pool.shelve(0, &mut a);
        pool.unshelve(0, &mut a);
        assert_eq!(a.batch.len(), 4);
        assert_eq!(a.held, 5);
        while !a.batch.is_empty() {
            run_one(&mut a);
        }
        assert!(matches!(take(&pool, 0, &mut a), Poll::Ready(Take::Closed)));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The hand-off with the real worker loop (`worker::supervise`) on loom
    //! threads and a consumer that calls [`HandOff::exchange`] as the engine
    //! does. Time is frozen under loom (`internal::sync::Instant`), so no
    //! result is ever handed over because a delay ran out: every wake-up the
    //! models need comes from the protocol itself.

    use std::collections::VecDeque;
    use std::future::{Future, poll_fn};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use loom::future::block_on;
    use loom::thread;

    use super::{HandOff, Job, Lanes, Panic, Setup};
    use crate::internal::sync::model::{builder, builder_with};
    use crate::internal::sync::{AtomicBool, AtomicWaker, Ordering};
    use crate::pool::worker::supervise;

    fn pool(workers: usize, ordered: bool) -> Arc<HandOff<u32, u32>> {
        Arc::new(HandOff::new(Setup {
            workers,
            threads: workers,
            window: 4,
            lanes: Lanes::Shared,
            ordered,
            fails: None,
            stop: None,
        }))
    }

    /// Starts `workers` workers on threads of their own, each calling `f`.
    fn start<F, Fut>(
        pool: &Arc<HandOff<u32, u32>>,
        workers: usize,
        f: F,
    ) -> Vec<thread::JoinHandle<()>>
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = u32> + 'static,
    {
        let f = Arc::new(f);
        (0..workers)
            .map(|index| {
                let (pool, f) = (Arc::clone(pool), Arc::clone(&f));
                thread::spawn(move || block_on(supervise(pool, f, index, None)))
            })
            .collect()
    }

    /// The consumer, as the engine drives the hand-off: stages each of
    /// `batches` in turn (the input ends with the last), takes the finished
    /// results and parks whenever there are none, until it has `expected`
    /// results; `on_result` sees each as it arrives. Ordered, it tells the
    /// hand-off the sequence number it must release next. A worker's panic
    /// ends it.
    fn consume(
        pool: &HandOff<u32, u32>,
        mut batches: VecDeque<Vec<Job<u32>>>,
        expected: usize,
        mut on_result: impl FnMut(u32),
    ) -> Result<Vec<Job<u32>>, Panic> {
        let mut got: Vec<Job<u32>> = Vec::new();
        let mut done = VecDeque::new();
        let mut wakers = Vec::new();
        block_on(poll_fn(|cx| {
            loop {
                let mut staged = vec![batches.pop_front().unwrap_or_default()];
                let head = (0..).find(|seq| got.iter().all(|(s, _)| s != seq)).unwrap();
                pool.exchange(
                    cx,
                    &mut staged,
                    batches.is_empty(),
                    head,
                    &mut done,
                    &mut wakers,
                )?;
                let arrived = !done.is_empty();
                for (seq, out) in done.drain(..) {
                    on_result(out);
                    got.push((seq, out));
                }
                if got.len() == expected {
                    return Poll::Ready(Ok(std::mem::take(&mut got)));
                }
                if arrived {
                    continue;
                }
                if !batches.is_empty() {
                    // Let the workers run before the next batch arrives.
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }))
    }

    /// Queues `items`, the whole input, before any worker starts (fewer
    /// interleavings for a model about the workers).
    fn queue_up_front(pool: &HandOff<u32, u32>, items: Vec<Job<u32>>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut done = VecDeque::new();
        let queued = pool.exchange(&mut cx, &mut [items], true, 0, &mut done, &mut Vec::new());
        assert!(queued.is_ok() && done.is_empty());
    }

    fn jobs(seqs: impl IntoIterator<Item = u64>) -> Vec<Job<u32>> {
        seqs.into_iter().map(|seq| (seq, seq as u32)).collect()
    }

    /// Consumes until every one of `items` items has its result, checks
    /// each came once, and waits for every worker to return.
    fn consume_all(
        pool: &HandOff<u32, u32>,
        batches: VecDeque<Vec<Job<u32>>>,
        items: u64,
        workers: Vec<thread::JoinHandle<()>>,
        on_result: impl FnMut(u32),
    ) {
        let expected = usize::try_from(items).unwrap();
        let got =
            consume(pool, batches, expected, on_result).unwrap_or_else(|_| panic!("no panic"));
        assert_exactly_once(got, items);
        for worker in workers {
            worker.join().unwrap();
        }
    }

    /// Every result once, and each the result of its own item.
    fn assert_exactly_once(mut got: Vec<Job<u32>>, items: u64) {
        got.sort_unstable();
        let want: Vec<Job<u32>> = (0..items).map(|seq| (seq, seq as u32 * 10)).collect();
        assert_eq!(got, want);
    }

    /// A one-way gate between threads: a call waits on it, something else
    /// opens it.
    #[derive(Clone)]
    struct Gate(Arc<(AtomicBool, AtomicWaker)>);

    impl Gate {
        fn new() -> Self {
            Gate(Arc::new((AtomicBool::new(false), AtomicWaker::new())))
        }

        fn open(&self) {
            self.0.0.store(true, Ordering::Release);
            self.0.1.wake();
        }

        async fn wait(&self) {
            poll_fn(|cx| {
                if self.0.0.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                self.0.1.register(cx.waker());
                if self.0.0.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Invariants 1, 4 and 7: two workers share three items that arrive in
    /// two batches (the workers may park in between). Every result reaches
    /// the parked consumer exactly once, and once the input ended every
    /// worker returns by itself.
    #[test]
    fn loom_every_result_is_handed_over_once_and_every_worker_returns() {
        // Three threads: a bound of 3 took minutes on a 2-core machine, 2
        // takes seconds.
        builder_with(2).check(|| {
            let pool = pool(2, false);
            let workers = start(&pool, 2, |x| async move { x * 10 });
            let batches = VecDeque::from([jobs([0]), jobs([1, 2])]);
            consume_all(&pool, batches, 3, workers, |_| {});
        });
    }

    /// Invariant 3: a worker whose call waits hands over the results it
    /// holds, and wakes a parked consumer for them, before it waits. Here
    /// the call on item 2 waits until the consumer has the result of item 1,
    /// which the same worker ran just before it: kept back, it would wait
    /// for ever. Ordered, so the consumer also says which result it needs.
    #[test]
    fn loom_a_waiting_call_hands_over_the_results_before_it() {
        builder().check(|| {
            let pool = pool(1, true);
            let gate = Gate::new();
            let waits = gate.clone();
            let workers = start(&pool, 1, move |x| {
                let waits = waits.clone();
                async move {
                    if x == 2 {
                        waits.wait().await;
                    }
                    x * 10
                }
            });
            let batches = VecDeque::from([jobs(0..3)]);
            consume_all(&pool, batches, 3, workers, |out| {
                if out == 10 {
                    gate.open();
                }
            });
        });
    }

    /// Invariant 3, the shelf: the call on item 1 waits until item 2 has
    /// run. A worker that holds both in one batch must put item 2 on its
    /// shelf and wake the parked worker, which takes it from there; nothing
    /// runs twice, and both workers return (invariant 7). The whole input is
    /// queued before the workers start and the results are taken once they
    /// have returned: the consumer is left out, as it plays no part here.
    #[test]
    fn loom_a_shelved_item_is_run_by_another_worker_exactly_once() {
        builder().check(|| {
            let pool = pool(2, false);
            queue_up_front(&pool, jobs(0..3));
            let gate = Gate::new();
            let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = Arc::clone(&ran);
            let f = Arc::new(move |x| {
                let (gate, count) = (gate.clone(), Arc::clone(&count));
                async move {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match x {
                        1 => gate.wait().await,
                        2 => gate.open(),
                        _ => {}
                    }
                    x * 10
                }
            });
            let other = {
                let (pool, f) = (Arc::clone(&pool), Arc::clone(&f));
                thread::spawn(move || block_on(supervise(pool, f, 1, None)))
            };
            block_on(supervise(Arc::clone(&pool), f, 0, None));
            other.join().unwrap();
            let mut cx = Context::from_waker(Waker::noop());
            let mut got = VecDeque::new();
            let taken = pool.exchange(
                &mut cx,
                &mut [Vec::new()],
                true,
                0,
                &mut got,
                &mut Vec::new(),
            );
            assert!(taken.is_ok());
            assert_exactly_once(got.into(), 3);
            assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 3);
        });
    }

    /// Invariant 5: a panic in a worker's call reaches the consumer, parked
    /// or not, and the worker's thread ends.
    #[test]
    fn loom_a_panic_in_a_worker_reaches_the_consumer() {
        builder().check(|| {
            let pool = pool(1, false);
            let workers = start(&pool, 1, |x| async move {
                if x == 0 {
                    // Not `panic!`: no hook, so no message per execution.
                    std::panic::resume_unwind(Box::new("boom"));
                }
                x
            });
            let got = consume(&pool, VecDeque::from([jobs([0])]), 1, |_| {});
            let panic = got.expect_err("the panic reaches the consumer");
            assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
            for worker in workers {
                worker.join().unwrap();
            }
        });
    }
}
