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
    /// The limiter whose queue waiters join to be served in turn, if any.
    #[doc(hidden)]
    fn queue(&self) -> Option<&RateLimiter>;
}

impl sealed::Sealed for RateLimiter {}

impl<T> Gate<T> for RateLimiter {
    type Ticket = ();

    #[inline]
    fn ticket(&mut self, _: &T) {}

    #[inline]
    fn try_pass(&self, (): &(), due: Option<Instant>) -> Result<(), RateLimitError> {
        self.take_as_of(1, due)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        RateLimiter::task_context(self)
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        RateLimiter::set_context(self, ctx);
    }

    fn queue(&self) -> Option<&RateLimiter> {
        Some(self)
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

    fn try_pass(&self, cost: &u32, due: Option<Instant>) -> Result<(), RateLimitError> {
        self.limiter.take_as_of(*cost, due)
    }

    fn task_context(&self) -> Option<&TaskContext> {
        self.limiter.task_context()
    }

    fn set_context(&mut self, ctx: &TaskContext) {
        self.limiter.set_context(ctx);
    }

    fn queue(&self) -> Option<&RateLimiter> {
        Some(&self.limiter)
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

    /// No queue: one would make waiters for different keys wait on each other.
    fn queue(&self) -> Option<&RateLimiter> {
        None
    }
}
