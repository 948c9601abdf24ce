//! [`Timer`]: the waiting of a delayed stream — its turn in the limiter's
//! queue, its sleep, and its context's cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{PollSemaphore, WaitForCancellationFutureOwned};

use crate::context::TaskContext;

/// What a waiting stream waits on, allocated on its first wait and reused:
/// its turn in the limiter's queue, then the instant its item may pass, or
/// the cancellation of its context.
#[derive(Default)]
pub(super) struct Timer {
    queue: Option<PollSemaphore>,
    /// Held from the moment this stream's turn comes until its item passes.
    turn: Option<OwnedSemaphorePermit>,
    /// Waiting in the queue, not yet for the sleep.
    queued: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    pub(super) cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Timer {
    pub(super) fn set(&mut self, ready_at: Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(ready_at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(ready_at))),
        }
    }

    /// After a refusal: queue for a turn first if the gate has a queue and
    /// this stream does not hold the turn yet; sleep until `ready_at` otherwise.
    pub(super) fn wait(&mut self, ready_at: Instant, turn: Option<&Arc<Semaphore>>) {
        match turn {
            Some(turn) if self.turn.is_none() => {
                self.queue
                    .get_or_insert_with(|| PollSemaphore::new(Arc::clone(turn)));
                self.queued = true;
            }
            _ => self.set(ready_at),
        }
    }

    /// Ready when it is time to check the held item again.
    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.queued {
            let queue = self.queue.as_mut().expect("queued with a queue");
            let turn = ready!(queue.poll_acquire(cx)).expect("the turn semaphore is never closed");
            self.turn = Some(turn);
            self.queued = false;
            // Our turn: check at once, the allowance may be free already.
            return Poll::Ready(());
        }
        self.poll_sleep(cx)
    }

    /// Gives up the turn (the item passed, or the stream stopped).
    pub(super) fn done(&mut self) {
        self.turn = None;
        self.queued = false;
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
