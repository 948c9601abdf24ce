//! [`Timer`]: the waiting of a delayed stream — its sleep, the reservation it
//! sleeps on, and its context's cancellation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use crate::context::{CancelledOwned, TaskContext};
use crate::rate::gcra::Reservation;

/// What a waiting stream waits on, allocated on its first wait and reused.
///
/// An item held back by a [`RateLimiter`](crate::rate::RateLimiter) gate has
/// its permits reserved: when the sleep ends it passes without another check,
/// and dropping the timer (the stream stopped or dropped) gives them back.
/// An item held back by a keyed gate sleeps until it is due, then is checked
/// again as of that instant.
#[derive(Default)]
pub(super) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The instant the held item is due, for a gate without reservations.
    due: Option<Instant>,
    /// The held item's permits, for a gate with reservations.
    reservation: Option<Reservation>,
    pub(super) cancelled: Option<Pin<Box<CancelledOwned>>>,
}

/// What the held item does once its sleep is over.
pub(super) enum Woken {
    /// Its permits were reserved: it passes.
    Reserved,
    /// Check it again, as of the instant it was due.
    Retry(Option<Instant>),
}

impl Timer {
    fn set(&mut self, at: Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Holds the item until its reservation's instant.
    pub(super) fn reserved(&mut self, reservation: Reservation) {
        self.set(reservation.ready_at());
        self.due = None;
        self.reservation = Some(reservation);
    }

    /// Holds the item until `ready_at`, then checks it again.
    pub(super) fn retry_at(&mut self, ready_at: Instant) {
        self.set(ready_at);
        self.due = Some(ready_at);
    }

    /// Ready when the held item's sleep is over.
    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Woken> {
        if let Some(sleep) = &mut self.sleep {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(match self.reservation.take() {
            Some(reservation) => {
                reservation.keep();
                Woken::Reserved
            }
            None => Woken::Retry(self.due.take()),
        })
    }

    /// Lets go of the held item's wait; an unused reservation is given back.
    #[inline]
    pub(super) fn done(&mut self) {
        self.due = None;
        self.reservation = None;
    }

    pub(super) fn poll_cancelled(&mut self, cx: &mut Context<'_>, ctx: &TaskContext) -> Poll<()> {
        self.cancelled
            .get_or_insert_with(|| Box::pin(ctx.cancelled_owned()))
            .as_mut()
            .poll(cx)
    }
}
