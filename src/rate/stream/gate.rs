//! [`Gate`]: what a rate-limited stream checks each item against — one
//! permit per item, a cost per item, or a quota per key.

use std::hash::Hash;

use tokio::time::Instant;

use crate::context::TaskContext;
use crate::rate::{KeyedRateLimiter, RateLimitError, RateLimiter};

mod sealed {
    pub trait Sealed {}
}

/// What a [`RateLimit`](super::RateLimit) stream checks each item against: a [`RateLimiter`]
/// (one permit per item), [`Weighted`] (a cost per item) or [`Keyed`] (a quota
/// per key). Sealed: the operators on
/// [`ConcurrentStreamExt`](crate::ConcurrentStreamExt) build these for you.
pub trait Gate<T>: sealed::Sealed {
    /// What the gate needs to know about an item (its cost, its key),
    /// worked out once per item however often the item is checked.
    #[doc(hidden)]
    type Ticket;
    #[doc(hidden)]
    fn ticket(&mut self, item: &T) -> Self::Ticket;
    /// Charges the item, as of `due` for an item that slept until then.
    #[doc(hidden)]
    fn try_pass(&self, ticket: &Self::Ticket, due: Option<Instant>) -> Result<(), RateLimitError>;
    #[doc(hidden)]
    fn task_context(&self) -> Option<&TaskContext>;
    #[doc(hidden)]
    fn set_context(&mut self, ctx: &TaskContext);
    /// The limiter a waiting item reserves its permits on, if any; without
    /// one, a waiting item sleeps and is checked again.
    #[doc(hidden)]
    fn limiter(&self) -> Option<&RateLimiter>;
    /// What the item costs, for its reservation.
    #[doc(hidden)]
    fn cost(&self, ticket: &Self::Ticket) -> u32;
}

impl sealed::Sealed for RateLimiter {}

impl<T> Gate<T> for RateLimiter {
    type Ticket = ();

    #[inline]
    fn ticket(&mut self, _: &T) {}

    /// A waiting item reserved its permit, so `due` never applies.
    #[inline]
    fn try_pass(&self, (): &(), _due: Option<Instant>) -> Result<(), RateLimitError> {
        self.take(1)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        RateLimiter::task_context(self)
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        RateLimiter::set_context(self, ctx);
    }

    fn limiter(&self) -> Option<&RateLimiter> {
        Some(self)
    }

    fn cost(&self, (): &()) -> u32 {
        1
    }
}

/// The gate of [`rate_limit_weighted`](crate::ConcurrentStreamExt::rate_limit_weighted):
/// a limiter and the function that prices each item.
pub struct Weighted<F> {
    limiter: RateLimiter,
    cost: F,
}

impl<F> Weighted<F> {
    pub(crate) fn new(limiter: RateLimiter, cost: F) -> Self {
        Weighted { limiter, cost }
    }
}

impl<F> sealed::Sealed for Weighted<F> {}

impl<T, F: FnMut(&T) -> u32> Gate<T> for Weighted<F> {
    type Ticket = u32;

    fn ticket(&mut self, item: &T) -> u32 {
        (self.cost)(item)
    }

    fn try_pass(&self, cost: &u32, _due: Option<Instant>) -> Result<(), RateLimitError> {
        self.limiter.take(*cost)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        self.limiter.task_context()
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        self.limiter.set_context(ctx);
    }

    fn limiter(&self) -> Option<&RateLimiter> {
        Some(&self.limiter)
    }

    fn cost(&self, cost: &u32) -> u32 {
        *cost
    }
}

/// The gate of [`rate_limit_by`](crate::ConcurrentStreamExt::rate_limit_by):
/// a keyed limiter and the function that names each item's key.
pub struct Keyed<K: Hash + Eq + Clone, F> {
    limiter: KeyedRateLimiter<K>,
    key: F,
}

impl<K: Hash + Eq + Clone, F> Keyed<K, F> {
    pub(crate) fn new(limiter: KeyedRateLimiter<K>, key: F) -> Self {
        Keyed { limiter, key }
    }
}

impl<K: Hash + Eq + Clone, F> sealed::Sealed for Keyed<K, F> {}

impl<T, K: Hash + Eq + Clone, F: FnMut(&T) -> K> Gate<T> for Keyed<K, F> {
    type Ticket = K;

    fn ticket(&mut self, item: &T) -> K {
        (self.key)(item)
    }

    fn try_pass(&self, key: &K, due: Option<Instant>) -> Result<(), RateLimitError> {
        self.limiter.take(key, 1, due)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        self.limiter.task_context()
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        self.limiter.set_context(ctx);
    }

    /// No reservations: a keyed waiter sleeps and is checked again, as of
    /// the instant it was due.
    fn limiter(&self) -> Option<&RateLimiter> {
        None
    }

    fn cost(&self, _: &K) -> u32 {
        1
    }
}
