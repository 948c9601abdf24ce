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

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::internal::cancel_watch::CancelHint;

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
