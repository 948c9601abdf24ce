//! [`Timer`]: the waiting of a delayed stream — its turn in the limiter's
//! queue, its sleep, and its context's cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{PollSemaphore, WaitForCancellationFutureOwned};

use crate::context::TaskContext;
use crate::rate::RateLimiter;

/// What a waiting stream waits on, allocated on its first wait and reused:
/// its turn in the limiter's queue, then the instant its item may pass, or
/// the cancellation of its context.
#[derive(Default)]
pub(super) struct Timer {
    queue: Option<PollSemaphore>,
    /// Held from the moment this stream's turn comes until its item passes.
    turn: Option<OwnedSemaphorePermit>,
    /// Waiting in the queue for a turn.
    queued: bool,
    /// The waiter ahead was abandoned: this item goes on without a turn.
    skip_queue: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The instant the item is due when `sleep` is for it (not for patience
    /// in the queue): once it fires, the item is charged as of then.
    due: Option<Instant>,
    pub(super) cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Timer {
    pub(super) fn set(&mut self, ready_at: Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(ready_at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(ready_at))),
        }
    }

    /// After a refusal: with a turn, renew its lease and sleep until
    /// `ready_at`; without one, queue for it (unless the waiter ahead was
    /// found abandoned); with no queue at all, just sleep.
    pub(super) fn wait(&mut self, ready_at: Instant, queue: Option<&RateLimiter>) {
        match queue.map(RateLimiter::turns) {
            Some(turns) if self.turn.is_some() => {
                turns.renew(ready_at);
                self.sleep_until_due(ready_at);
            }
            Some(turns) if !self.skip_queue => {
                self.queue
                    .get_or_insert_with(|| PollSemaphore::new(Arc::clone(turns.permit())));
                self.queued = true;
                // Past the holder's lease, stop queueing behind it.
                self.set(ready_at.max(turns.lease_until()));
                self.due = None;
            }
            _ => self.sleep_until_due(ready_at),
        }
    }

    fn sleep_until_due(&mut self, ready_at: Instant) {
        self.set(ready_at);
        self.due = Some(ready_at);
    }

    /// Ready when it is time to check the held item again, with the instant
    /// to charge it as of if it slept until it was due (`None`: check now).
    pub(super) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        queue: Option<&RateLimiter>,
    ) -> Poll<Option<Instant>> {
        if !self.queued {
            ready!(self.poll_sleep(cx));
            return Poll::Ready(self.due);
        }
        let permits = self.queue.as_mut().expect("queued with a queue");
        if let Poll::Ready(turn) = permits.poll_acquire(cx) {
            self.turn = Some(turn.expect("the turn semaphore is never closed"));
            self.queued = false;
            // Our turn: check at once, the allowance may be free already.
            return Poll::Ready(None);
        }
        let turns = queue.expect("queued on a limiter").turns();
        loop {
            ready!(self.poll_sleep(cx));
            let lease = turns.lease_until();
            if lease <= Instant::now() {
                break;
            }
            self.set(lease);
        }
        // The holder let its lease run out: nobody polls it. Go on without a
        // turn for this item rather than wait behind it for ever.
        self.queued = false;
        self.queue = None;
        self.skip_queue = true;
        Poll::Ready(None)
    }

    /// Gives up the turn (the item passed, or the stream stopped).
    #[inline]
    pub(super) fn done(&mut self) {
        self.turn = None;
        self.queued = false;
        self.skip_queue = false;
        self.due = None;
    }

    pub(super) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }

    pub(super) fn poll_cancelled(&mut self, cx: &mut Context<'_>, ctx: &TaskContext) -> Poll<()> {
        self.cancelled
            .get_or_insert_with(|| Box::pin(ctx.token().cancelled_owned()))
            .as_mut()
            .poll(cx)
    }
}
