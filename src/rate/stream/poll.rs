//! How a [`RateLimit`] polls, one `Stream` impl per policy.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::time::Instant;

use super::timer::Timer;
use super::{Delay, Discard, Fail, Gate, RateLimit, RateLimited};
use crate::rate::RateLimitError;
use crate::rate::limiter::{context_error, deadline_check};

/// What came of asking for the next item.
enum Admit<T, K> {
    Passed(T),
    Refused {
        item: T,
        ticket: K,
        error: RateLimitError,
    },
    /// The input ended.
    Ended,
    /// The context stopped the stream.
    Stopped(RateLimitError),
}

/// Pulls the next item (or retries the held one, charged as of `due` if it
/// slept until then) and asks the gate.
fn poll_admit<S, G>(
    stream: Pin<&mut S>,
    gate: &mut G,
    held: &mut Option<(S::Item, G::Ticket)>,
    due: Option<Instant>,
    timer: &mut Timer,
    cx: &mut Context<'_>,
) -> Poll<Admit<S::Item, G::Ticket>>
where
    S: Stream,
    G: Gate<S::Item>,
{
    if let Some(ctx) = gate.task_context().filter(|ctx| ctx.is_cancelled()) {
        return Poll::Ready(Admit::Stopped(context_error(ctx)));
    }
    let (item, ticket) = match held.take() {
        Some(held) => held,
        None => match stream.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let ticket = gate.ticket(&item);
                (item, ticket)
            }
            Poll::Ready(None) => return Poll::Ready(Admit::Ended),
            Poll::Pending => {
                // An idle input must not keep a cancelled stream alive.
                if let Some(ctx) = gate.task_context() {
                    if timer.poll_cancelled(cx, ctx).is_ready() {
                        return Poll::Ready(Admit::Stopped(context_error(ctx)));
                    }
                }
                return Poll::Pending;
            }
        },
    };
    Poll::Ready(match gate.try_pass(&ticket, due) {
        Ok(()) => Admit::Passed(item),
        Err(error) => Admit::Refused {
            item,
            ticket,
            error,
        },
    })
}

fn stop<T>(
    stopped: &mut Option<RateLimitError>,
    done: &mut bool,
    why: RateLimitError,
) -> Poll<Option<T>> {
    *stopped = Some(why);
    *done = true;
    Poll::Ready(None)
}

impl<S, G> Stream for RateLimit<S, G, Delay>
where
    S: Stream,
    G: Gate<S::Item>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            let mut due = None;
            if this.held.is_some() {
                if let Some(ctx) = this.gate.task_context() {
                    if this.timer.poll_cancelled(cx, ctx).is_ready() {
                        *this.held = None;
                        this.timer.done();
                        return stop(this.stopped, this.done, context_error(ctx));
                    }
                }
                due = ready!(this.timer.poll_ready(cx, this.gate.queue()));
            }
            let admit = ready!(poll_admit(
                this.stream.as_mut(),
                this.gate,
                this.held,
                due,
                this.timer,
                cx
            ));
            match admit {
                Admit::Passed(item) => {
                    this.timer.done();
                    return Poll::Ready(Some(item));
                }
                Admit::Refused {
                    item,
                    ticket,
                    error: RateLimitError::OverQuota { ready_at },
                } => {
                    if let Err(why) = deadline_check(ready_at, this.gate.task_context()) {
                        this.timer.done();
                        return stop(this.stopped, this.done, why);
                    }
                    *this.held = Some((item, ticket));
                    this.timer.wait(ready_at, this.gate.queue());
                }
                Admit::Refused {
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
                Admit::Refused { error, .. } | Admit::Stopped(error) => {
                    this.timer.done();
                    return stop(this.stopped, this.done, error);
                }
                Admit::Ended => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
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
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            let admit = ready!(poll_admit(
                this.stream.as_mut(),
                this.gate,
                this.held,
                None,
                this.timer,
                cx
            ));
            match admit {
                Admit::Passed(item) => return Poll::Ready(Some(item)),
                Admit::Refused { .. } => {
                    this.policy.dropped.add_one();
                    // A fast input could be dropped item after item without
                    // end: give the runtime its turn now and then.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                }
                Admit::Stopped(why) => return stop(this.stopped, this.done, why),
                Admit::Ended => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
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
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let admit = ready!(poll_admit(
            this.stream.as_mut(),
            this.gate,
            this.held,
            None,
            this.timer,
            cx
        ));
        match admit {
            Admit::Passed(item) => Poll::Ready(Some(Ok(item))),
            Admit::Refused { item, error, .. } => {
                Poll::Ready(Some(Err(RateLimited { item, error })))
            }
            Admit::Stopped(why) => stop(this.stopped, this.done, why),
            Admit::Ended => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
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
