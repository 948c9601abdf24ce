//! [`Turns`]: the first-come, first-served queue of the waiters on one
//! limiter, with a lease so that a waiter nobody polls any more cannot hold
//! up the others for ever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Rate;

/// However fast the rate, a holder gets this much slack past its own
/// wake-up before the others stop queueing behind it: timers fire late on a
/// busy runtime.
const MIN_GRACE: Duration = Duration::from_millis(100);

/// GCRA keeps one timestamp, not a queue. Left to it, the waiters that
/// happen to wake first win every time and the others starve; this queue
/// serves them in the order they started waiting.
///
/// The waiter holding the single permit (the *holder*) is the next to be
/// served. Before each sleep it renews its lease to the instant it will wake
/// plus a grace. A waiter still queued when the lease has run out takes the
/// holder for abandoned (a stream left half-way through a wait and never
/// polled again) and stops queueing: fairness degrades, nothing hangs.
pub(crate) struct Turns {
    permit: Arc<Semaphore>,
    origin: Instant,
    /// Nanoseconds after `origin` until which the holder is presumed alive.
    lease: AtomicU64,
    grace: Duration,
}

impl Turns {
    pub(crate) fn new(rate: &Rate) -> Self {
        Turns {
            permit: Arc::new(Semaphore::new(1)),
            origin: Instant::now(),
            lease: AtomicU64::new(0),
            grace: rate.interval().max(MIN_GRACE),
        }
    }

    /// The single permit: whoever holds it is served next.
    pub(crate) fn permit(&self) -> &Arc<Semaphore> {
        &self.permit
    }

    /// Called by the holder before it sleeps until `ready_at`.
    pub(crate) fn renew(&self, ready_at: Instant) {
        let until = (ready_at + self.grace).saturating_duration_since(self.origin);
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.lease.store(nanos, Ordering::Relaxed);
    }

    /// Until when the current holder is presumed alive.
    pub(crate) fn lease_until(&self) -> Instant {
        self.origin + Duration::from_nanos(self.lease.load(Ordering::Relaxed))
    }
}
