//! [`Engine`]: the consumer side of every pool stream operator. It pulls the
//! source, feeds the workers through the [`HandOff`], releases their results
//! (in input order, or as they finish), and ends the pool.
//!
//! How a pool ends, in every case the same way: the workers are aborted and
//! **joined**, then a panic any of them caught is resumed, else the last item
//! (a `try_` pool's failure, or its context's error) is yielded, then the
//! end. So a panic is never hidden by an error, a cancel or the input's end
//! that raced it, and no worker outlives the output's end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use pin_project_lite::pin_project;
use tokio::task::JoinSet;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Instrument;

use super::Workers;
use super::hand_off::{HandOff, Job, Lanes, Setup, Stop};
use super::mapping::Mapping;
use super::worker::supervise;
use crate::context::{ContextError, TaskContext};
use crate::internal::cancel_watch::CancelWatch;
use crate::internal::reorder::ReorderWindow;

/// How the results are released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// In input order (`par_map`).
    Input,
    /// As they finish (`par_map_unordered`, `par_for_each`); per-worker lanes
    /// keep each key's order (`par_map_keyed`).
    Completion,
}

/// What an operator asks of the [`Engine`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Named in the panic outside a runtime.
    pub(crate) operator: &'static str,
    pub(crate) order: Order,
    pub(crate) lanes: Lanes,
}

impl Plan {
    /// An operator whose workers share one queue.
    pub(crate) const fn shared(operator: &'static str, order: Order) -> Self {
        Plan {
            operator,
            order,
            lanes: Lanes::Shared,
        }
    }
}

/// The lane of an item, for [`Lanes::PerWorker`].
pub(crate) type Route<T> = Box<dyn Fn(&T) -> usize + Send + Sync>;

type Start<T, O> = Box<dyn FnOnce(&Arc<HandOff<T, O>>) -> JoinSet<()> + Send>;

enum Released<O> {
    Completion(VecDeque<Job<O>>),
    Input(ReorderWindow<O>),
}

enum Phase<O> {
    Running,
    /// The workers are aborted; once they are joined, the pool yields its
    /// last item, if any, and ends (or resumes a panic).
    Ending {
        last: Option<O>,
    },
    /// The last item was yielded; the next poll ends the stream.
    Yielded,
    Finished,
}

/// The pool's context, and how the consumer watches it.
struct Bound {
    ctx: TaskContext,
    /// Raises the workers' stop flag inside `cancel()`; checked by the
    /// consumer on every poll with one atomic load.
    watch: CancelWatch,
    /// Wakes a parked consumer on cancellation.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

pin_project! {
    /// Feeds the source's items to the workers and releases their results.
    pub(crate) struct Engine<S: Stream, M: Mapping<S::Item>> {
        #[pin]
        source: S,
        source_done: bool,
        hand_off: Arc<HandOff<M::Arg, M::Output>>,
        start: Option<Start<M::Arg, M::Output>>,
        tasks: JoinSet<()>,
        bound: Option<Bound>,
        route: Option<Route<M::Arg>>,
        staged: Vec<Vec<Job<M::Arg>>>,
        done: VecDeque<Job<M::Output>>,
        wakers: Vec<Waker>,
        released: Released<M::Output>,
        next_seq: u64,
        // Pulled from the source and not yet released: bounded by `window`.
        in_system: usize,
        window: usize,
        phase: Phase<M::Output>,
    }
}

impl<S, M> Engine<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    /// Captures the runtime (or panics naming the operator) and the context
    /// (the one given, else the one current here); the workers are spawned on
    /// the first poll.
    pub(crate) fn new<F, Fut>(
        source: S,
        workers: Workers,
        f: F,
        plan: Plan,
        route: Option<Route<M::Arg>>,
    ) -> Self
    where
        M::Arg: Send + 'static,
        M::Output: Send + 'static,
        F: Fn(M::Arg) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = M::Output> + Send + 'static,
    {
        let handle = crate::internal::runtime_handle(plan.operator);
        let count = workers.count();
        let window = count.saturating_add(workers.buffer_size());
        let bound = crate::internal::ambient_context(workers.task_context()).map(|ctx| Bound {
            watch: CancelWatch::new(ctx.token(), Waker::noop().clone()),
            cancelled: Box::pin(ctx.token().cancelled_owned()),
            ctx,
        });
        let stop = bound.as_ref().map(|bound| Stop {
            hint: bound.watch.hint(),
            token: bound.ctx.token(),
        });
        let hand_off = Arc::new(HandOff::new(Setup {
            workers: count,
            threads: handle.metrics().num_workers(),
            window,
            lanes: plan.lanes,
            ordered: plan.order == Order::Input,
            fails: M::CAN_FAIL.then_some(M::fails as fn(&M::Output) -> bool),
            stop,
        }));
        let ctx = bound.as_ref().map(|bound| bound.ctx.clone());
        let f = Arc::new(f);
        let start: Start<M::Arg, M::Output> = Box::new(move |hand_off| {
            let mut tasks = JoinSet::new();
            let parent = ctx.as_ref().map(TaskContext::span);
            for index in 0..count {
                let pool = workers.label();
                let span = match &parent {
                    Some(parent) => {
                        tracing::info_span!(parent: parent, "worker", pool = %pool, index)
                    }
                    None => tracing::info_span!("worker", pool = %pool, index),
                };
                let worker = supervise(hand_off.clone(), f.clone(), index, ctx.clone());
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
            bound,
            route,
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

    /// The context the pool is bound to.
    pub(crate) fn task_context(&self) -> Option<&TaskContext> {
        self.bound.as_ref().map(|bound| &bound.ctx)
    }

    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// No lower bound unless nothing can end the pool early (no context, no
    /// failure): then every item pulled and every item the source promises
    /// is yielded. At most one result per input item, plus a `try_` pool's
    /// context error.
    pub(crate) fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.phase {
            Phase::Finished | Phase::Yielded => (0, Some(0)),
            Phase::Ending { last } => (0, Some(usize::from(last.is_some()))),
            Phase::Running => {
                let (source_lower, source_upper) = if self.source_done {
                    (0, Some(0))
                } else {
                    self.source.size_hint()
                };
                let upper = source_upper
                    .and_then(|upper| upper.checked_add(self.in_system))
                    .and_then(|upper| upper.checked_add(usize::from(M::CAN_FAIL)));
                let certain = !M::CAN_FAIL && self.bound.is_none();
                let lower = if certain {
                    source_lower.saturating_add(self.in_system)
                } else {
                    0
                };
                (lower, upper)
            }
        }
    }

    pub(crate) fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M::Output>> {
        let mut this = self.project();
        loop {
            match this.phase {
                Phase::Finished => return Poll::Ready(None),
                Phase::Yielded => {
                    *this.phase = Phase::Finished;
                    return Poll::Ready(None);
                }
                Phase::Ending { .. } => {
                    while let Some(joined) = ready!(this.tasks.poll_join_next(cx)) {
                        if let Err(e) = joined {
                            if e.is_panic() {
                                *this.phase = Phase::Finished;
                                std::panic::resume_unwind(e.into_panic());
                            }
                        }
                    }
                    let Phase::Ending { last } = std::mem::replace(this.phase, Phase::Finished)
                    else {
                        unreachable!("matched above");
                    };
                    if let Some(panic) = this.hand_off.take_panic() {
                        std::panic::resume_unwind(panic);
                    }
                    if last.is_some() {
                        *this.phase = Phase::Yielded;
                    }
                    return Poll::Ready(last);
                }
                Phase::Running => {}
            }

            // Cancelled: stop at once, releasing nothing more.
            if let Some(bound) = this.bound.as_mut() {
                if bound.watch.is_cancelled() {
                    end(this.tasks, this.phase, M::stopped(bound.err()));
                    continue;
                }
            }

            // Results already taken: released without touching shared state.
            let next = match this.released {
                Released::Completion(fifo) => fifo.pop_front().map(|(_, out)| out),
                Released::Input(window) => window.pop(),
            };
            if let Some(out) = next {
                *this.in_system -= 1;
                if M::fails(&out) {
                    // Fail-fast: the failure is the last item.
                    end(this.tasks, this.phase, Some(out));
                    continue;
                }
                return Poll::Ready(Some(out));
            }

            if let Some(start) = this.start.take() {
                *this.tasks = start(this.hand_off);
            }
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(bound) = this.bound.as_mut() {
                if bound.cancelled.as_mut().poll(cx).is_ready() {
                    end(this.tasks, this.phase, M::stopped(bound.err()));
                    continue;
                }
            }

            // Pull input while the window has room (backpressure).
            let mut input_failure = None;
            while !*this.source_done
                && !this.hand_off.has_failed()
                && *this.in_system < *this.window
            {
                match this.source.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        let seq = *this.next_seq;
                        *this.next_seq += 1;
                        *this.in_system += 1;
                        match M::admit(item) {
                            Ok(arg) => {
                                let lane = this.route.as_ref().map_or(0, |route| route(&arg));
                                this.staged[lane].push((seq, arg));
                            }
                            // An `Err` in a `try_` pool's input: a failure at
                            // its place in the input, needing no call. Intake
                            // stops here.
                            Err(failure) => {
                                this.hand_off.fail(seq);
                                input_failure = Some((seq, failure));
                            }
                        }
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
            this.done.extend(input_failure);

            if !this.done.is_empty() {
                coop.made_progress();
                match this.released {
                    Released::Completion(fifo) => {
                        std::mem::swap(fifo, this.done);
                        // Unordered fail-fast: once the failure is in hand,
                        // stop the other calls now.
                        if this.hand_off.has_failed() && release_failure_last::<S::Item, M>(fifo) {
                            this.tasks.abort_all();
                        }
                    }
                    Released::Input(window) => window.arrive(this.done),
                }
                continue;
            }
            if *this.source_done && *this.in_system == 0 {
                end(this.tasks, this.phase, None);
                continue;
            }
            // Parked: a worker's results, the source or the context wakes us.
            return Poll::Pending;
        }
    }
}

impl Bound {
    /// Why the context stopped the pool.
    fn err(&self) -> ContextError {
        self.ctx.err().unwrap_or(ContextError::Cancelled)
    }
}

/// Aborts the workers; the pool yields `last` (if any) once they are joined.
fn end<O>(tasks: &mut JoinSet<()>, phase: &mut Phase<O>, last: Option<O>) {
    tasks.abort_all();
    *phase = Phase::Ending { last };
}

impl<S, M> std::fmt::Debug for Engine<S, M>
where
    S: Stream,
    M: Mapping<S::Item>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.tasks.len())
            .field("in_flight", &self.in_system)
            .field("window", &self.window)
            .field("input_ended", &self.source_done)
            .field("context", &self.task_context())
            .finish_non_exhaustive()
    }
}

/// Unordered fail-fast: of the results taken together with the first
/// failure, the successes are released first and only that one failure
/// after them, so no finished success is dropped. Returns whether a failure
/// was among them.
fn release_failure_last<In, M: Mapping<In>>(fifo: &mut VecDeque<Job<M::Output>>) -> bool {
    let Some(first) = fifo.iter().position(|(_, out)| M::fails(out)) else {
        return false;
    };
    let failure = fifo.remove(first).expect("position is in range");
    fifo.retain(|(_, out)| !M::fails(out));
    fifo.push_back(failure);
    true
}
