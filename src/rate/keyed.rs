//! [`KeyedRateLimiter`]: one quota per key, with quiet keys forgotten.

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::InsufficientCapacity;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use tokio::time::Instant;

use super::clock::{ScheduleClock, checked_as_of};
use super::limiter::{context_error, wait_until};
use super::{Rate, RateLimitError, TokioInstant};
use crate::context::TaskContext;

type Gcra<K> =
    governor::RateLimiter<K, HashMapStateStore<K>, ScheduleClock, NoOpMiddleware<TokioInstant>>;

/// Pruning walks every key, so it runs at most this often however short the
/// rate's refill time is.
const MIN_PRUNE_PERIOD: Duration = Duration::from_millis(100);

struct Shared<K: Hash + Eq + Clone> {
    gcra: Gcra<K>,
    rate: Rate,
    origin: Instant,
    prune_period: Duration,
    /// Nanoseconds after `origin` when the next prune is due.
    next_prune: AtomicU64,
}

/// A rate limiter with a quota per key (one per user, per host, …): each key
/// gets the full [`Rate`], independently of the others.
///
/// Memory stays bounded by the keys seen recently: a key that has been quiet
/// long enough to refill its whole burst is indistinguishable from a new one,
/// so it is forgotten. Checks prune such keys at most once per
/// [`Rate::refill_time`] (and at most every 100 ms), so a key lives for about
/// two refill times after its last use.
///
/// Clones share the quotas. Like [`RateLimiter`](super::RateLimiter), a clone
/// may carry its own [`context`](Self::context).
///
/// ```
/// use tokio_conc::rate::{KeyedRateLimiter, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let per_user = KeyedRateLimiter::new(Rate::per_second(1));
/// assert!(per_user.check_key(&"ann").is_ok());
/// assert!(per_user.check_key(&"ann").is_err());
/// assert!(per_user.check_key(&"bob").is_ok(), "bob has a quota of his own");
/// # }
/// ```
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
    context: Option<TaskContext>,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A keyed limiter giving every key `rate`. Built where a
    /// [`TaskContext`] is current, it is bound to it (the crate's
    /// [context rule](crate#contexts-one-rule)); [`context`](Self::context)
    /// sets another.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter: KeyedRateLimiter<u64> = KeyedRateLimiter::new(Rate::per_second(5));
    /// assert!(limiter.is_empty());
    /// # }
    /// ```
    pub fn new(rate: Rate) -> Self {
        KeyedRateLimiter {
            shared: Arc::new(Shared {
                gcra: Gcra::hashmap_with_clock(rate.quota(), ScheduleClock),
                rate,
                origin: Instant::now(),
                prune_period: rate.refill_time().max(MIN_PRUNE_PERIOD),
                next_prune: AtomicU64::new(0),
            }),
            // The crate's one context rule: the current one, if any.
            context: crate::internal::ambient_context(None),
        }
    }

    /// This limiter (the same quotas) with `ctx` attached, in place of the one
    /// it inherited where it was built; see
    /// [`RateLimiter::context`](super::RateLimiter::context).
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// use tokio_conc::rate::KeyedRateLimiter;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let limiter = KeyedRateLimiter::<u8>::new(Rate::per_second(1)).context(&ctx);
    /// ctx.cancel();
    /// assert!(limiter.check_key(&1).is_err());
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The context waits through this handle are bound to: the one attached
    /// by [`context`](Self::context), else the one current where the limiter
    /// was built, if any.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(KeyedRateLimiter::<u8>::new(Rate::per_second(1)).task_context().is_none());
    /// # }
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// The rate every key gets.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let rate = Rate::per_minute(10);
    /// assert_eq!(KeyedRateLimiter::<u8>::new(rate).rate(), rate);
    /// # }
    /// ```
    pub fn rate(&self) -> Rate {
        self.shared.rate
    }

    /// Takes one permit for `key` if its quota allows it now; never waits.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::OverQuota`], or [`RateLimitError::Context`] if the
    /// attached context is cancelled.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(1).burst(2));
    /// assert!(limiter.check_key(&7).is_ok());
    /// assert!(limiter.check_key(&7).is_ok());
    /// assert!(limiter.check_key(&7).is_err());
    /// # }
    /// ```
    pub fn check_key(&self, key: &K) -> Result<(), RateLimitError> {
        self.check_key_n(key, 1)
    }

    /// Takes `cost` permits for `key` at once if its quota allows it now; a
    /// zero cost always passes. Never waits.
    ///
    /// # Errors
    ///
    /// As [`check_key`](Self::check_key), plus
    /// [`RateLimitError::ExceedsBurst`] when `cost` is more than the burst.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate, RateLimitError};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(1).burst(3));
    /// assert!(limiter.check_key_n(&"a", 3).is_ok());
    /// assert_eq!(
    ///     limiter.check_key_n(&"a", 4),
    ///     Err(RateLimitError::ExceedsBurst { cost: 4, burst: 3 })
    /// );
    /// # }
    /// ```
    pub fn check_key_n(&self, key: &K, cost: u32) -> Result<(), RateLimitError> {
        self.refuse_if_cancelled()?;
        self.take(key, cost, None)
    }

    /// Waits until `key`'s quota allows one permit, and takes it.
    ///
    /// # Errors
    ///
    /// As [`RateLimiter::until_ready`](super::RateLimiter::until_ready).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(4));
    /// let start = tokio::time::Instant::now();
    /// limiter.until_key_ready(&"ann").await.unwrap();
    /// limiter.until_key_ready(&"bob").await.unwrap();
    /// limiter.until_key_ready(&"ann").await.unwrap();
    /// assert_eq!(start.elapsed(), Duration::from_millis(250));
    /// # }
    /// ```
    pub async fn until_key_ready(&self, key: &K) -> Result<(), RateLimitError> {
        self.until_key_n_ready(key, 1).await
    }

    /// Waits until `key`'s quota allows `cost` permits, and takes them.
    ///
    /// # Errors
    ///
    /// As [`RateLimiter::until_n_ready`](super::RateLimiter::until_n_ready).
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(4).burst(2));
    /// limiter.until_key_n_ready(&1, 2).await.unwrap();
    /// assert!(limiter.until_key_n_ready(&1, 3).await.is_err());
    /// # }
    /// ```
    pub async fn until_key_n_ready(&self, key: &K, cost: u32) -> Result<(), RateLimitError> {
        // After a sleep, charged as of the instant it was due (see
        // `RateLimiter::until_n_ready`).
        let mut due = None;
        loop {
            self.refuse_if_cancelled()?;
            match self.take(key, cost, due) {
                Err(RateLimitError::OverQuota { ready_at }) => {
                    wait_until(ready_at, self.context.as_ref()).await?;
                    due = Some(ready_at);
                }
                passed_or_failed => return passed_or_failed,
            }
        }
    }

    /// How many keys the limiter remembers now.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(1));
    /// limiter.check_key(&1).unwrap();
    /// limiter.check_key(&2).unwrap();
    /// assert_eq!(limiter.len(), 2);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.shared.gcra.len()
    }

    /// Whether the limiter remembers no key.
    ///
    /// ```
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(KeyedRateLimiter::<u8>::new(Rate::per_second(1)).is_empty());
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.gcra.is_empty()
    }

    /// Forgets now every key whose quota is full again (it would behave as a
    /// new key anyway). Checks already do this periodically; call it from a
    /// housekeeping task if the limiter may sit unused while holding many keys.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_conc::rate::{KeyedRateLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::new(Rate::per_second(10));
    /// for user in 0..100 {
    ///     limiter.check_key(&user).unwrap();
    /// }
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// limiter.forget_idle();
    /// assert!(limiter.is_empty());
    /// # }
    /// ```
    pub fn forget_idle(&self) {
        let before = self.shared.gcra.len();
        self.shared.gcra.retain_recent();
        // Shrinking reallocates; only worth it once most keys are gone.
        if self.shared.gcra.len() * 2 < before {
            self.shared.gcra.shrink_to_fit();
        }
    }

    /// Takes `cost` permits for `key`, ignoring any context; a waiter that
    /// slept until `due` is charged as of `due` (see
    /// [`RateLimiter::take_as_of`](super::RateLimiter::take_as_of)).
    pub(crate) fn take(
        &self,
        key: &K,
        cost: u32,
        due: Option<Instant>,
    ) -> Result<(), RateLimitError> {
        self.prune_if_due();
        let Some(cost_nz) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        let gcra = &self.shared.gcra;
        let decision = checked_as_of(due, || {
            if cost == 1 {
                Ok(gcra.check_key(key))
            } else {
                gcra.check_key_n(key, cost_nz)
            }
        });
        match decision {
            Ok(decision) => decision.map_err(RateLimitError::over_quota),
            Err(InsufficientCapacity(_)) => {
                Err(RateLimitError::exceeds_burst(cost, &self.shared.rate))
            }
        }
    }

    fn refuse_if_cancelled(&self) -> Result<(), RateLimitError> {
        match &self.context {
            Some(ctx) if ctx.is_cancelled() => Err(context_error(ctx)),
            _ => Ok(()),
        }
    }

    pub(crate) fn set_context(&mut self, ctx: &TaskContext) {
        self.context = Some(ctx.clone());
    }

    fn prune_if_due(&self) {
        let shared = &*self.shared;
        let now = nanos(Instant::now().saturating_duration_since(shared.origin));
        let due = shared.next_prune.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(nanos(shared.prune_period));
        // One caller wins the prune; the others carry on checking.
        if shared
            .next_prune
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.forget_idle();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<K: Hash + Eq + Clone> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            shared: Arc::clone(&self.shared),
            context: self.context.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> From<Rate> for KeyedRateLimiter<K> {
    /// [`KeyedRateLimiter::new`].
    fn from(rate: Rate) -> Self {
        KeyedRateLimiter::new(rate)
    }
}

impl<K: Hash + Eq + Clone> From<&KeyedRateLimiter<K>> for KeyedRateLimiter<K> {
    /// A clone: the same quotas, shared.
    fn from(limiter: &KeyedRateLimiter<K>) -> Self {
        limiter.clone()
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("rate", &self.shared.rate)
            .field("keys", &self.len())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
