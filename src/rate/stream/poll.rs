//! How a [`RateLimit`] polls, one `Stream` impl per policy.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::time::Instant;

use super::timer::Woken;
use super::{Delay, Discard, Fail, Gate, RateLimit, RateLimitProj, RateLimited};
use crate::context::TaskContext;
use crate::rate::RateLimitError;
use crate::rate::limiter::{context_error, deadline_check};

/// The gate's verdict on an item.
enum Verdict<T, K> {
    Passed(T),
    Refused {
        item: T,
        ticket: K,
        error: RateLimitError,
    },
}

impl<S, G, P> RateLimit<S, G, P>
where
    S: Stream,
    G: Gate<S::Item>,
{
    /// The fields to poll with, or `None` once the stream has ended.
    #[inline(always)]
    fn live(self: Pin<&mut Self>) -> Option<RateLimitProj<'_, S, G, P>> {
        let this = self.project();
        (!*this.done).then_some(this)
    }
}

/// The gate's verdict on the next item (the held one first, charged as of
/// `due` if it slept until then), or `None` once the stream is over: its
/// input ended, or its context stopped it.
///
/// Inlined: on the never-blocking path this is the whole per-item cost, and
/// a call returning the verdict through memory costs more than the check.
#[inline(always)]
fn poll_verdict<S, G, P>(
    this: &mut RateLimitProj<'_, S, G, P>,
    due: Option<Instant>,
    cx: &mut Context<'_>,
) -> Poll<Option<Verdict<S::Item, G::Ticket>>>
where
    S: Stream,
    G: Gate<S::Item>,
{
    if let Some(ctx) = this.gate.task_context().filter(|ctx| ctx.is_cancelled()) {
        let why = context_error(ctx);
        return stop(this, Some(why));
    }
    let (item, ticket) = match this.held.take() {
        Some(held) => held,
        None => match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let ticket = this.gate.ticket(&item);
                (item, ticket)
            }
            Poll::Ready(None) => return stop(this, None),
            Poll::Pending => {
                // An idle input must not keep a cancelled stream alive.
                if let Some(ctx) = this.gate.task_context() {
                    if this.timer.poll_cancelled(cx, ctx).is_ready() {
                        let why = context_error(ctx);
                        return stop(this, Some(why));
                    }
                }
                return Poll::Pending;
            }
        },
    };
    Poll::Ready(Some(match this.gate.try_pass(&ticket, due) {
        Ok(()) => Verdict::Passed(item),
        Err(error) => Verdict::Refused {
            item,
            ticket,
            error,
        },
    }))
}

/// Ends the stream, giving up any turn; `why` is what stopped it early, if
/// anything did (`None`: the input ended).
#[cold]
fn stop<S, G, P, T>(this: &mut RateLimitProj<'_, S, G, P>, why: Option<RateLimitError>) -> Poll<T>
where
    S: Stream,
    G: Gate<S::Item>,
    T: Default,
{
    this.timer.done();
    if why.is_some() {
        *this.stopped = why;
    }
    *this.done = true;
    Poll::Ready(T::default())
}

impl<S, G> Stream for RateLimit<S, G, Delay>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let Some(mut this) = self.live() else {
            return Poll::Ready(None);
        };
        loop {
            let mut due = None;
            if this.held.is_some() {
                // A wait that is over wins over a context stopping at the
                // same instant: a wait ending on the deadline goes ahead.
                match this.timer.poll_ready(cx) {
                    Poll::Ready(Woken::Reserved) => {
                        let (item, _) = this.held.take().expect("an item is held");
                        return Poll::Ready(Some(item));
                    }
                    Poll::Ready(Woken::Retry(at)) => due = at,
                    Poll::Pending => {
                        if let Some(ctx) = this.gate.task_context() {
                            if this.timer.poll_cancelled(cx, ctx).is_ready() {
                                let why = context_error(ctx);
                                *this.held = None;
                                return stop(&mut this, Some(why));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            let Some(verdict) = ready!(poll_verdict(&mut this, due, cx)) else {
                return Poll::Ready(None);
            };
            match verdict {
                Verdict::Passed(item) => return Poll::Ready(Some(item)),
                Verdict::Refused {
                    item,
                    ticket,
                    error: RateLimitError::OverQuota { ready_at },
                } => {
                    let ctx = this.gate.task_context();
                    let Some(limiter) = this.gate.limiter() else {
                        if let Err(why) = deadline_check(ready_at, ctx) {
                            return stop(&mut this, Some(why));
                        }
                        *this.held = Some((item, ticket));
                        this.timer.retry_at(ready_at);
                        continue;
                    };
                    // Hold the item's place: reserve its permits now.
                    let deadline = ctx.and_then(TaskContext::deadline);
                    match limiter.reserve(this.gate.cost(&ticket), deadline) {
                        // Freed in the meantime.
                        Ok(None) => return Poll::Ready(Some(item)),
                        Ok(Some(reservation)) => {
                            *this.held = Some((item, ticket));
                            this.timer.reserved(reservation);
                        }
                        Err(why) => return stop(&mut this, Some(why)),
                    }
                }
                Verdict::Refused {
                    error: RateLimitError::ExceedsBurst { cost, burst },
                    ..
                } => {
                    this.timer.done();
                    panic!(
                        "rate_limit_weighted: an item costs {cost} but the burst is {burst}, so \
                         it could never pass; raise the burst, or use .fail_over_quota() to get \
                         such items back as errors"
                    )
                }
                Verdict::Refused { error, .. } => return stop(&mut this, Some(error)),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, false)
    }
}

impl<S, G> Stream for RateLimit<S, G, Discard>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let Some(mut this) = self.live() else {
            return Poll::Ready(None);
        };
        loop {
            match ready!(poll_verdict(&mut this, None, cx)) {
                Some(Verdict::Passed(item)) => return Poll::Ready(Some(item)),
                Some(Verdict::Refused { .. }) => {
                    this.policy.dropped.add_one();
                    // A fast input could be dropped item after item without
                    // end: give the runtime its turn now and then.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, true)
    }
}

impl<S, G> Stream for RateLimit<S, G, Fail>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = Result<S::Item, RateLimited<S::Item>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(mut this) = self.live() else {
            return Poll::Ready(None);
        };
        let verdict = ready!(poll_verdict(&mut this, None, cx));
        Poll::Ready(verdict.map(|verdict| match verdict {
            Verdict::Passed(item) => Ok(item),
            Verdict::Refused { item, error, .. } => Err(RateLimited { item, error }),
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint(self, false)
    }
}

fn size_hint<S, G, P>(s: &RateLimit<S, G, P>, drops: bool) -> (usize, Option<usize>)
where
    S: Stream,
    G: Gate<S::Item>,
{
    if s.done {
        return (0, Some(0));
    }
    let held = usize::from(s.held.is_some());
    let (lower, upper) = s.stream.size_hint();
    // A context may end the stream early; a drop policy may drop anything.
    let lower = if drops || s.gate.task_context().is_some() {
        0
    } else {
        lower.saturating_add(held)
    };
    (lower, upper.and_then(|upper| upper.checked_add(held)))
}

impl<S, G, P> FusedStream for RateLimit<S, G, P>
where
    S: Stream,
    G: Gate<S::Item>,
    RateLimit<S, G, P>: Stream,
{
    fn is_terminated(&self) -> bool {
        self.done
    }
}
