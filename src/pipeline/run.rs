//! How one stage runs: the ticket each item carries, the call with its error
//! policy, and the output adapter that counts what leaves the stage.
//!
//! Invariants:
//!
//! * An item taken in gets a [`Ticket`]; the ticket is settled exactly once:
//!   as `items_out` when the stage's output hands the item on, as `errors`
//!   when its call fails for good, or as `dropped` when it is dropped unsettled
//!   (the pipeline stopped while the item was queued, running, or waiting to
//!   be handed on).
//! * `running` is raised for the length of one attempt and lowered by a guard,
//!   so a call dropped mid-attempt still lowers it and still counts its busy
//!   time.
//! * A failure under the stop policy is stored in the pipeline's error slot
//!   *before* the run's context is cancelled, so the consumer, which sees the
//!   stages end because of that cancellation, always finds the error.

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tracing::Instrument;

use super::stage::{Attempts, Jitter, OnFailure};
use super::stats::{Counters, Outcome, PipelineStats};
use crate::context::TaskContext;

/// The first error of a pipeline whose stage stops on failure.
pub(crate) type ErrorSlot<E> = Arc<Mutex<Option<E>>>;

/// Carried by an item through one stage; counts the item as dropped if it is
/// dropped before it is settled.
#[derive(Debug)]
pub(crate) struct Ticket {
    counters: Option<Arc<Counters>>,
}

impl Ticket {
    /// Counts one item in.
    pub(crate) fn take_in(counters: &Arc<Counters>) -> Self {
        counters.items_in.fetch_add(1, SeqCst);
        Ticket {
            counters: Some(counters.clone()),
        }
    }

    fn settle(mut self, bucket: fn(&Counters) -> &AtomicU64) {
        if let Some(counters) = self.counters.take() {
            bucket(&counters).fetch_add(1, SeqCst);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(counters) = self.counters.take() {
            counters.dropped.fetch_add(1, SeqCst);
            counters.settled.wake();
        }
    }
}

/// An item on its way into a stage's workers.
#[derive(Debug)]
pub(crate) struct Tracked<T> {
    pub(crate) value: T,
    pub(crate) ticket: Ticket,
}

/// A result on its way out of a stage: when it was finished, for the
/// blocked-time count.
#[derive(Debug)]
pub(crate) struct Done<U> {
    value: U,
    ticket: Ticket,
    at: Instant,
}

/// Raised while an attempt runs; lowering it adds the attempt's busy time,
/// also when the attempt is dropped half-way.
struct Running<'a> {
    counters: &'a Counters,
    since: Instant,
}

impl<'a> Running<'a> {
    fn start(counters: &'a Counters) -> Self {
        counters.running.fetch_add(1, SeqCst);
        counters.attempts.fetch_add(1, SeqCst);
        Running {
            counters,
            since: Instant::now(),
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        Counters::add_time(&self.counters.busy_ns, self.since.elapsed());
        if self.counters.running.fetch_sub(1, SeqCst) == 1 {
            self.counters.settled.wake();
        }
    }
}

/// Everything a stage's workers share.
pub(crate) struct StageRun<F, P, E> {
    pub(crate) f: F,
    pub(crate) attempts: P,
    pub(crate) on_failure: OnFailure,
    pub(crate) counters: Arc<Counters>,
    pub(crate) ctx: TaskContext,
    pub(crate) slot: ErrorSlot<E>,
    pub(crate) stats: PipelineStats,
    pub(crate) jitter: Jitter,
}

impl<F, P, E> StageRun<F, P, E> {
    fn name(&self) -> &Cow<'static, str> {
        &self.counters.name
    }
}

impl<F, P, E> StageRun<F, P, E>
where
    E: Display,
{
    /// One item through the stage's function, under its retry and failure
    /// policies: `Some` with the result, or `None` when the item failed (it
    /// is then counted, and under the stop policy the pipeline is stopped).
    pub(crate) async fn call<T, U, Fut>(&self, item: Tracked<T>) -> Option<Done<U>>
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<U, E>>,
        P: Attempts<T>,
    {
        let span = tracing::info_span!("stage", stage = %self.name());
        self.attempt_all(item).instrument(span).await
    }

    async fn attempt_all<T, U, Fut>(&self, item: Tracked<T>) -> Option<Done<U>>
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<U, E>>,
        P: Attempts<T>,
    {
        let Tracked { value, ticket } = item;
        let limit = self.attempts.limit();
        let mut kept = Some(value);
        let mut attempt = 1;
        loop {
            let input = match kept.as_ref() {
                Some(value) if attempt < limit => self.attempts.again(value),
                _ => kept.take().expect("the last attempt takes the item"),
            };
            let outcome = {
                let _running = Running::start(&self.counters);
                (self.f)(input).await
            };
            let error = match outcome {
                Ok(value) => {
                    return Some(Done {
                        value,
                        ticket,
                        at: Instant::now(),
                    });
                }
                Err(error) => error,
            };
            self.counters.set_last_error(error.to_string());
            if attempt < limit {
                let retry = self.attempts.backoff().expect("more than one attempt");
                let wait = self.jitter.wait(retry, attempt);
                self.counters.retries.fetch_add(1, SeqCst);
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, %error, "call failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            self.fail(error, ticket);
            return None;
        }
    }

    fn fail(&self, error: E, ticket: Ticket) {
        ticket.settle(|c| &c.errors);
        match self.on_failure {
            OnFailure::Skip => {
                self.counters.skipped.fetch_add(1, SeqCst);
                tracing::warn!(%error, "call failed; item skipped");
            }
            OnFailure::Stop => {
                tracing::debug!(%error, "call failed; stopping the pipeline");
                let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() && !self.ctx.is_cancelled() {
                    self.stats.mark_ended(Outcome::Failed {
                        stage: self.name().clone(),
                        error: error.to_string(),
                    });
                    *slot = Some(error);
                }
                drop(slot);
                self.ctx.cancel();
            }
        }
    }
}

pin_project! {
    /// A stage's output: drops the items that failed, counts what it hands
    /// on, and adds up the time a finished item waited while nobody asked.
    pub(crate) struct StageOutput<S> {
        #[pin]
        inner: S,
        counters: Arc<Counters>,
        last_handed: Option<Instant>,
        asked: bool,
    }
}

impl<S> StageOutput<S> {
    pub(crate) fn new(inner: S, counters: Arc<Counters>) -> Self {
        StageOutput {
            inner,
            counters,
            last_handed: None,
            asked: false,
        }
    }
}

impl<S, U> Stream for StageOutput<S>
where
    S: Stream<Item = Option<Done<U>>>,
{
    type Item = U;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<U>> {
        let mut this = self.project();
        loop {
            let done = match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => {
                    // Downstream is asking and we have nothing: not blocked.
                    *this.asked = true;
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(None)) => continue,
                Poll::Ready(Some(Some(done))) => done,
            };
            let now = Instant::now();
            if let (false, Some(last)) = (*this.asked, *this.last_handed) {
                // Nobody asked between the last hand-off and this poll, and
                // this item was finished for part of that time.
                let since = last.max(done.at);
                Counters::add_time(
                    &this.counters.blocked_ns,
                    now.saturating_duration_since(since),
                );
            }
            *this.asked = false;
            *this.last_handed = Some(now);
            done.ticket.settle(|c| &c.items_out);
            return Poll::Ready(Some(done.value));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Failed items are dropped, so only the upper bound carries over.
        (0, self.inner.size_hint().1)
    }
}
