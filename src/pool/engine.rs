//! The machinery under every pool stream operator: the workers' loop and the
//! consumer-side [`Engine`] that feeds them and hands their results out.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream};
use pin_project_lite::pin_project;
use tokio::task::JoinSet;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Instrument;

use super::Workers;
use super::hand_off::{HandOff, Job, Lanes, Take};
use crate::context::TaskContext;
use crate::internal::reorder::ReorderWindow;

/// Items pulled ahead of the workers when [`Workers::buffer`] is not set: a
/// batch hand-off pays only when there is a batch to hand over.
const DEFAULT_BUFFER: usize = 256;

/// A worker aims to hand its results back about this often: long enough that
/// the per-batch lock and wake-up vanish next to trivial items, short enough
/// that a batch of slow items never holds work another worker could run.
const BATCH_TIME: Duration = Duration::from_micros(40);

/// A worker that keeps finding work yields after this many batches.
const YIELD_EVERY: u32 = 32;

/// How the results are released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// In input order (`par_map`).
    Input,
    /// As they finish (`par_map_unordered`, `par_for_each`); per-worker lanes
    /// keep each key's order (`par_map_keyed`).
    Completion,
}

/// The lane of an item, for [`Lanes::PerWorker`].
pub(crate) type Route<T> = Box<dyn Fn(&T) -> usize + Send>;

/// The settings an operator passes to [`Engine::new`].
pub(crate) struct Plan<T> {
    pub(crate) operator: &'static str,
    pub(crate) order: Order,
    pub(crate) lanes: Lanes,
    pub(crate) route: Option<Route<T>>,
}

type Start<T, O> = Box<dyn FnOnce(&Arc<HandOff<T, O>>) -> JoinSet<()> + Send>;

enum Released<O> {
    Completion(VecDeque<Job<O>>),
    Input(ReorderWindow<O>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Waiting for the workers to return before ending the stream.
    Joining,
    Finished,
}

pin_project! {
    /// Feeds the source's items to the workers and releases their results.
    pub(crate) struct Engine<S: Stream, O> {
        #[pin]
        source: S,
        source_done: bool,
        hand_off: Arc<HandOff<S::Item, O>>,
        start: Option<Start<S::Item, O>>,
        tasks: JoinSet<()>,
        cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
        route: Option<Route<S::Item>>,
        staged: Vec<Vec<Job<S::Item>>>,
        done: VecDeque<Job<O>>,
        wakers: Vec<Waker>,
        released: Released<O>,
        next_seq: u64,
        // Pulled from the source and not yet released: bounded by `window`.
        in_system: usize,
        window: usize,
        phase: Phase,
    }
}

impl<S, O> Engine<S, O>
where
    S: Stream,
    S::Item: Send + 'static,
    O: Send + 'static,
{
    /// Captures the runtime (or panics naming the operator); the workers are
    /// spawned on the first poll.
    pub(crate) fn new<F, Fut>(
        source: S,
        workers: Workers,
        f: F,
        plan: Plan<S::Item>,
        fails: Option<fn(&O) -> bool>,
    ) -> Self
    where
        F: Fn(S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
    {
        let handle = crate::internal::runtime_handle(plan.operator);
        let count = workers.count();
        let window = count
            + workers
                .buffer_setting()
                .unwrap_or(DEFAULT_BUFFER.max(2 * count));
        let ctx = workers
            .task_context()
            .cloned()
            .or_else(TaskContext::current)
            .unwrap_or_default();
        let hand_off = Arc::new(HandOff::new(
            count,
            handle.metrics().num_workers(),
            window,
            plan.lanes,
            plan.order == Order::Input,
            fails,
        ));
        let cancelled = Box::pin(ctx.token().cancelled_owned());
        let f = Arc::new(f);
        let start: Start<S::Item, O> = Box::new(move |hand_off: &Arc<HandOff<S::Item, O>>| {
            let mut tasks = JoinSet::new();
            let ctx_span = ctx.span();
            for index in 0..count {
                let span = tracing::info_span!(parent: &ctx_span, "worker", pool = %workers.label(), index);
                let work = run_worker(hand_off.clone(), f.clone(), index);
                let (ctx, hand_off) = (ctx.clone(), hand_off.clone());
                let worker = async move {
                    let caught = AssertUnwindSafe(work).catch_unwind();
                    if let Ok(Err(panic)) = ctx.run(ctx.scope(caught)).await {
                        hand_off.report_panic(panic);
                    }
                };
                tasks.spawn_on(worker.instrument(span), &handle);
            }
            tasks
        });
        let lanes = match plan.lanes {
            Lanes::Shared => 1,
            Lanes::PerWorker => count,
        };
        Engine {
            source,
            source_done: false,
            hand_off,
            start: Some(start),
            tasks: JoinSet::new(),
            cancelled,
            route: plan.route,
            staged: (0..lanes).map(|_| Vec::new()).collect(),
            done: VecDeque::new(),
            wakers: Vec::new(),
            released: match plan.order {
                Order::Input => Released::Input(ReorderWindow::new()),
                Order::Completion => Released::Completion(VecDeque::new()),
            },
            next_seq: 0,
            in_system: 0,
            window,
            phase: Phase::Running,
        }
    }

    pub(crate) fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<O>> {
        let mut this = self.project();
        loop {
            match *this.phase {
                Phase::Finished => return Poll::Ready(None),
                Phase::Joining => {
                    while let Some(joined) = ready!(this.tasks.poll_join_next(cx)) {
                        if let Err(e) = joined {
                            if e.is_panic() {
                                *this.phase = Phase::Finished;
                                std::panic::resume_unwind(e.into_panic());
                            }
                        }
                    }
                    *this.phase = Phase::Finished;
                    return Poll::Ready(None);
                }
                Phase::Running => {}
            }

            // Results already taken: released without touching shared state.
            let next = match this.released {
                Released::Completion(fifo) => fifo.pop_front().map(|(_, out)| out),
                Released::Input(window) => window.pop(),
            };
            if let Some(out) = next {
                *this.in_system -= 1;
                if this.hand_off.fails(&out) {
                    // Fail-fast: the failure is the last item.
                    this.tasks.abort_all();
                    *this.phase = Phase::Joining;
                }
                return Poll::Ready(Some(out));
            }

            if let Some(start) = this.start.take() {
                *this.tasks = start(this.hand_off);
            }
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if this.cancelled.as_mut().poll(cx).is_ready() {
                this.tasks.abort_all();
                *this.phase = Phase::Joining;
                continue;
            }

            // Pull input while the window has room (backpressure).
            let failed = this.hand_off.has_failed();
            while !*this.source_done && !failed && *this.in_system < *this.window {
                match this.source.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        let lane = this.route.as_ref().map_or(0, |route| route(&item));
                        this.staged[lane].push((*this.next_seq, item));
                        *this.next_seq += 1;
                        *this.in_system += 1;
                    }
                    Poll::Ready(None) => *this.source_done = true,
                    Poll::Pending => break,
                }
            }

            let head = match this.released {
                Released::Input(window) => window.next(),
                Released::Completion(_) => 0,
            };
            let exchanged = this.hand_off.exchange(
                cx,
                this.staged,
                *this.source_done,
                head,
                this.done,
                this.wakers,
            );
            if let Err(panic) = exchanged {
                this.tasks.abort_all();
                *this.phase = Phase::Finished;
                std::panic::resume_unwind(panic);
            }

            if !this.done.is_empty() {
                coop.made_progress();
                match this.released {
                    Released::Completion(fifo) => {
                        std::mem::swap(fifo, this.done);
                        if this.hand_off.has_failed() {
                            release_failure_last(fifo, this.hand_off);
                        }
                    }
                    Released::Input(window) => window.arrive(this.done),
                }
                continue;
            }
            if *this.source_done && *this.in_system == 0 {
                *this.phase = Phase::Joining;
                continue;
            }
            // Parked: a worker's results, the source or the context wakes us.
            return Poll::Pending;
        }
    }
}

impl<S: Stream, O> std::fmt::Debug for Engine<S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.tasks.len())
            .field("in_flight", &self.in_system)
            .field("window", &self.window)
            .field("input_ended", &self.source_done)
            .finish_non_exhaustive()
    }
}

/// Unordered fail-fast: of the results taken together with the first
/// failure, the successes are released first and only that one failure
/// after them, so no finished success is dropped.
fn release_failure_last<T, O>(fifo: &mut VecDeque<Job<O>>, hand_off: &HandOff<T, O>) {
    let Some(first) = fifo.iter().position(|(_, out)| hand_off.fails(out)) else {
        return;
    };
    let failure = fifo.remove(first).expect("position is in range");
    fifo.retain(|(_, out)| !hand_off.fails(out));
    fifo.push_back(failure);
}

/// One worker: takes batches, runs `f` on each item, hands the results back
/// in batches.
async fn run_worker<T, O, F, Fut>(shared: Arc<HandOff<T, O>>, f: Arc<F>, index: usize)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = O>,
{
    let mut batch: Vec<Job<T>> = Vec::new();
    let mut out: Vec<Job<O>> = Vec::new();
    let mut limit = 1;
    let mut failed = false;
    let mut long_waits = true;
    let mut since_yield = 0;
    loop {
        // A failure must reach the consumer at once; so must results when
        // each call is slow enough that the next batch may take long.
        let urgent = std::mem::take(&mut failed) || limit == 1;
        match poll_fn(|cx| shared.poll_take(cx, index, &mut out, urgent, &mut batch, limit)).await {
            Take::Closed => return,
            // The consumer was just woken into this thread's LIFO slot,
            // which no other thread can steal from: yield so it runs now
            // (and refills the queue) instead of after this whole batch.
            Take::Work { woke_consumer } => {
                // Also yield now and then so other tasks on this thread run
                // (tokio's own budget yield would park this worker where no
                // other thread can steal it, as `yield_now` does).
                since_yield += 1;
                if woke_consumer || since_yield == YIELD_EVERY {
                    since_yield = 0;
                    yield_stealable().await;
                }
            }
        }
        let started = Instant::now();
        let mut ran = 0;
        let mut jobs = batch.drain(..);
        while let Some((seq, item)) = jobs.next() {
            if shared.is_cut(seq) {
                continue;
            }
            ran += 1;
            let mut call = std::pin::pin!(f(item));
            let output = match poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                Poll::Ready(output) => output,
                Poll::Pending => {
                    // This call waits: hand the rest of the batch and the
                    // results so far back, so no item queues behind it —
                    // unless this worker's waits have been short (a yield, a
                    // ready socket), where the hand-back costs more than it saves.
                    if long_waits {
                        shared.give_back(&mut out, &mut jobs);
                    }
                    let waiting = Instant::now();
                    let output = call.await;
                    long_waits = waiting.elapsed() >= BATCH_TIME;
                    output
                }
            };
            failed = shared.fails(&output);
            out.push((seq, output));
            if failed {
                shared.fail(seq);
                break;
            }
        }
        drop(jobs);
        limit = next_limit(started.elapsed(), ran);
    }
}

/// Yields once, leaving the task where another runtime thread can steal it.
///
/// `tokio::task::yield_now` parks the task in a per-thread deferred list that
/// other threads cannot steal from, so two workers yielding to each other can
/// end up sharing one thread while the other idles. A task that wakes itself
/// during its poll is instead pushed onto the thread's stealable run queue
/// (and an idle thread is notified).
fn yield_stealable() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// How many items the next batch may take, from how long the last `ran`
/// calls took.
fn next_limit(elapsed: Duration, ran: usize) -> usize {
    let per_item = elapsed.as_nanos() / ran.max(1) as u128;
    let fit = BATCH_TIME.as_nanos() / per_item.max(1);
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, 1024)
}
