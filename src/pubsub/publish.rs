//! [`Publish`]: the future of [`Topic::publish`](super::Topic::publish).
//!
//! Invariants (with those of `core.rs`, whose 4–6 this file keeps):
//!
//! - A `Publish` is in the topic's `waiters` queue exactly while its `waiter`
//!   is `Some`, and it still owns its message then.
//! - Only the front of `waiters` (or a publisher that finds the queue empty)
//!   may publish; after publishing or leaving the queue, whoever was at the
//!   front wakes the new front, so a dropped future never strands the others.
//! - Closing the topic wakes every waiter; each then leaves with its message.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use super::core::{Core, Shared, Waiter};
use super::error::{PublishError, TryPublishError};

/// The future returned by [`Topic::publish`](super::Topic::publish): the
/// number of subscriptions the message reached, or the message back once the
/// topic is closed.
///
/// Cancel-safe in the sense that matters: dropping it before it completes
/// publishes nothing and gives its place in line to the next publisher.
#[must_use = "futures do nothing unless polled"]
pub struct Publish<'a, T> {
    shared: &'a Shared<T>,
    msg: Option<T>,
    /// Its ticket in `waiters`, while it waits there.
    waiter: Option<u64>,
}

// The message is only ever moved, never pinned.
impl<T> Unpin for Publish<'_, T> {}

impl<'a, T> Publish<'a, T> {
    pub(super) fn new(shared: &'a Shared<T>, msg: T) -> Self {
        Publish {
            shared,
            msg: Some(msg),
            waiter: None,
        }
    }
}

/// How many publishes that need not wait share one unit of Tokio's
/// cooperative budget.
const PUBLISHES_PER_UNIT: u32 = 16;

/// Charges Tokio's cooperative budget for a publish, lightly: a publish that
/// need not wait is about as cheap as a synchronous send (which Tokio's own
/// broadcast channel charges nothing for), so only one in
/// [`PUBLISHES_PER_UNIT`] takes a unit. A publishing loop still yields to the
/// runtime now and then, without a scheduling round trip every 128 messages.
/// A publish that waits yields anyway.
fn charge_budget<T>(shared: &Shared<T>, cx: &mut Context<'_>) -> Poll<()> {
    // A racy count is fine: it only paces the charges.
    let n = shared.publishes.load(Ordering::Relaxed);
    if n % PUBLISHES_PER_UNIT == 0 {
        ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
    }
    shared.publishes.store(n.wrapping_add(1), Ordering::Relaxed);
    Poll::Ready(())
}

/// Whether a message can be dropped unseen, without the lock: nobody would get
/// it now or later (no subscription, no replay) and the topic is open.
pub(super) fn unheard<T>(shared: &Shared<T>) -> bool {
    shared.subscribers.load(Ordering::SeqCst) == 0
        && shared.replay.load(Ordering::Relaxed) == 0
        && !shared.closed.load(Ordering::SeqCst)
}

impl<T: Clone> Future for Publish<'_, T> {
    type Output = Result<usize, PublishError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.waiter.is_none() {
            ready!(charge_budget(this.shared, cx));
        }
        let msg = this
            .msg
            .take()
            .expect("`Publish` polled after it completed");
        if this.waiter.is_none() && unheard(this.shared) {
            return Poll::Ready(Ok(0));
        }
        let mut core = this.shared.lock();
        if core.end.is_some() {
            leave(&mut core, this.waiter.take());
            return Poll::Ready(Err(PublishError(msg)));
        }
        let my_turn = match this.waiter {
            Some(id) => core.waiters.front().is_some_and(|front| front.id == id),
            None => core.waiters.is_empty(),
        };
        if my_turn && core.room_or_announce(this.shared) {
            if this.waiter.take().is_some() {
                core.waiters.pop_front();
            }
            let reached = core.push(msg, this.shared);
            core.wake_front_waiter();
            return Poll::Ready(Ok(reached));
        }
        this.msg = Some(msg);
        match this.waiter {
            Some(id) => {
                if let Some(waiter) = core.waiters.iter_mut().find(|waiter| waiter.id == id) {
                    waiter.waker.clone_from(cx.waker());
                }
            }
            None => {
                let id = core.next_waiter;
                core.next_waiter += 1;
                core.waiters.push_back(Waiter {
                    id,
                    waker: cx.waker().clone(),
                });
                this.waiter = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Publish<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            leave(&mut self.shared.lock(), Some(id));
        }
    }
}

/// Takes waiter `id` out of line; if it was at the front, the next one is
/// woken to take its turn.
fn leave<T>(core: &mut Core<T>, id: Option<u64>) {
    let Some(id) = id else { return };
    let Some(at) = core.waiters.iter().position(|waiter| waiter.id == id) else {
        return;
    };
    core.waiters.remove(at);
    if at == 0 {
        core.wake_front_waiter();
    }
}

/// [`Topic::try_publish`](super::Topic::try_publish).
pub(super) fn try_publish<T: Clone>(
    shared: &Shared<T>,
    msg: T,
) -> Result<usize, TryPublishError<T>> {
    if unheard(shared) {
        return Ok(0);
    }
    let mut core = shared.lock();
    if core.end.is_some() {
        return Err(TryPublishError::Closed(msg));
    }
    if !core.waiters.is_empty() || !core.has_room(shared.capacity) {
        return Err(TryPublishError::Full(msg));
    }
    Ok(core.push(msg, shared))
}

impl<T> fmt::Debug for Publish<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("done", &self.msg.is_none())
            .field("waiting", &self.waiter.is_some())
            .finish()
    }
}
