//! [`Gcra`]: the quota behind a [`RateLimiter`](super::RateLimiter) — GCRA on
//! one atomic, with reservations (Go's `Reserve`), refunds (Go's
//! `Reservation.Cancel`) and a rate that can change while it runs (Go's
//! `SetLimit`/`SetBurst`).
//!
//! Governor's limiter fixes its quota for life and has no reservations, so
//! the one limiter that needs both keeps its own state; the arithmetic is
//! governor's GCRA, cell for cell. Invariants:
//!
//! * The state is the theoretical arrival time `tat`, in nanoseconds after
//!   `origin`. At instant `t` the *debt* is `max(0, tat - t)`. With an
//!   interval `T` and a burst `b`, `n` cells conform at `t` iff
//!   `debt + n·T <= b·T` — a bucket of `b` tokens refilled one per `T`,
//!   holding `b - debt / T` tokens (negative while reservations are
//!   outstanding).
//! * Taking `n` cells at `t` sets `tat = max(tat, t) + n·T` in one
//!   compare-and-swap. A *check* takes them only if they conform now. A
//!   *reservation* takes them anyway and is ready at `tat - b·T`, the
//!   instant they conform: every later caller is judged after it, so no
//!   stream of checks can starve a waiter, and waiters are served in the
//!   order they reserved.
//! * A reservation given up before its instant gives its cells back, less
//!   those reserved after it (Go's approximation). After its instant it
//!   gives nothing back. While a reservation waits, nothing but a later
//!   reservation (or a rate change) moves `tat`: its cells are over the
//!   burst, so every check fails. Across a rate change the cells go back in
//!   the new units if nothing was reserved after it, else not at all.
//! * Changing the rate or burst keeps the tokens, capped at the new burst,
//!   and serializes with other changes. A permit judged on another thread
//!   while the rate changes may be judged by the old rate or the new one.
//! * An interval of zero is the unlimited rate: everything passes and the
//!   state is not touched.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Rate, RateLimitError};

pub(crate) struct Gcra {
    origin: Instant,
    tat: AtomicU64,
    /// `T` in nanoseconds; 0 for the unlimited rate.
    interval: AtomicU64,
    burst: AtomicU32,
    /// Bumped by every rate change: a refund across one would be in the
    /// wrong units.
    generation: AtomicU64,
    /// Bumped by every reservation that has to wait.
    reservations: AtomicU64,
    changing: Mutex<()>,
}

/// Cells taken ahead of their instant; dropping it unkept gives them back.
pub(crate) struct Reservation {
    gcra: Arc<Gcra>,
    /// `n·T` when it was made.
    weight: u64,
    /// `tat` right after it was made.
    tat_after: u64,
    cost: u32,
    /// `reservations` counted this one as.
    seq: u64,
    /// When its cells conform, in nanoseconds after `origin`.
    ready: u64,
    generation: u64,
    kept: bool,
}

impl Reservation {
    /// When the reserved cells may be used.
    pub(crate) fn ready_at(&self) -> Instant {
        self.gcra.instant(self.ready)
    }

    /// The cells are used: no refund.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.gcra.refund(self);
        }
    }
}

/// `(tat', ready)`: the state after taking cells weighing `weight` at
/// `now`, and the instant they conform.
#[inline]
fn schedule(tat: u64, now: u64, weight: u64, tolerance: u64) -> (u64, u64) {
    let next = tat.max(now).saturating_add(weight);
    (next, next.saturating_sub(tolerance))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Gcra {
    pub(crate) fn new(rate: Rate) -> Self {
        Gcra {
            origin: Instant::now(),
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(nanos(rate.interval)),
            burst: AtomicU32::new(rate.burst.get()),
            generation: AtomicU64::new(0),
            reservations: AtomicU64::new(0),
            changing: Mutex::new(()),
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.origin))
    }

    fn instant(&self, at: u64) -> Instant {
        self.origin + Duration::from_nanos(at)
    }

    /// The rate in force.
    pub(crate) fn rate(&self) -> Rate {
        let burst = self.burst.load(Acquire);
        let burst = std::num::NonZeroU32::new(burst).expect("a burst is never zero");
        Rate {
            interval: Duration::from_nanos(self.interval.load(Acquire)),
            burst,
        }
    }

    /// `(n·T, b·T)` for `cost` cells at the rate in force; `None` when
    /// nothing is charged (the unlimited rate, a zero cost).
    #[inline]
    fn terms(&self, cost: u32) -> Result<Option<(u64, u64)>, RateLimitError> {
        let interval = self.interval.load(Acquire);
        if interval == 0 || cost == 0 {
            return Ok(None);
        }
        let burst = self.burst.load(Acquire);
        if cost > burst {
            return Err(RateLimitError::ExceedsBurst { cost, burst });
        }
        Ok(Some((
            interval.saturating_mul(u64::from(cost)),
            interval.saturating_mul(u64::from(burst)),
        )))
    }

    /// Takes `cost` cells if they conform now (Go's `AllowN`).
    #[inline]
    pub(crate) fn check(&self, cost: u32) -> Result<(), RateLimitError> {
        let Some((weight, tolerance)) = self.terms(cost)? else {
            return Ok(());
        };
        let now = self.now();
        let mut tat = self.tat.load(Acquire);
        loop {
            let (next, ready) = schedule(tat, now, weight, tolerance);
            if ready > now {
                return Err(RateLimitError::OverQuota {
                    ready_at: self.instant(ready),
                });
            }
            match self.tat.compare_exchange_weak(tat, next, AcqRel, Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Takes `cost` cells now if they conform (`Ok(None)`), or reserves them
    /// for the instant they will (`Ok(Some(..))`) — unless that instant is
    /// after `not_after` (Go's `WaitN` refuses only waits that would end
    /// past the deadline; one ending on it goes ahead).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        cost: u32,
        not_after: Option<Instant>,
    ) -> Result<Option<Reservation>, RateLimitError> {
        loop {
            let generation = self.generation.load(Acquire);
            let Some((weight, tolerance)) = self.terms(cost)? else {
                return Ok(None);
            };
            let now = self.now();
            let tat = self.tat.load(Acquire);
            let (next, ready) = schedule(tat, now, weight, tolerance);
            if ready > now {
                if let Some(deadline) = not_after {
                    let ready_at = self.instant(ready);
                    if ready_at > deadline {
                        return Err(RateLimitError::WouldExceedDeadline { ready_at, deadline });
                    }
                }
            }
            if self
                .tat
                .compare_exchange_weak(tat, next, AcqRel, Acquire)
                .is_err()
            {
                continue;
            }
            if ready <= now {
                return Ok(None);
            }
            let seq = self.reservations.fetch_add(1, AcqRel) + 1;
            return Ok(Some(Reservation {
                gcra: Arc::clone(self),
                weight,
                tat_after: next,
                cost,
                seq,
                ready,
                generation,
                kept: false,
            }));
        }
    }

    fn refund(&self, reservation: &Reservation) {
        if self.now() >= reservation.ready {
            return;
        }
        let same_rate = self.generation.load(Acquire) == reservation.generation;
        let last = self.reservations.load(Acquire) == reservation.seq;
        let mut tat = self.tat.load(Acquire);
        loop {
            let back = if same_rate {
                let reserved_after = tat.saturating_sub(reservation.tat_after);
                reservation.weight.saturating_sub(reserved_after)
            } else if last {
                let interval = self.interval.load(Acquire);
                interval.saturating_mul(u64::from(reservation.cost))
            } else {
                0
            };
            if back == 0 {
                return;
            }
            let restored = tat.saturating_sub(back);
            match self
                .tat
                .compare_exchange_weak(tat, restored, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(current) => tat = current,
            }
        }
    }

    /// Puts `rate` in force for later permits, keeping the tokens (capped
    /// at the new burst).
    pub(crate) fn set(&self, rate: Rate) {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        self.convert(nanos(rate.interval), rate.burst.get());
    }

    /// Changes the burst only.
    pub(crate) fn set_burst(&self, burst: u32) {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        self.convert(self.interval.load(Acquire), burst);
    }

    fn convert(&self, interval: u64, burst: u32) {
        let (old_interval, old_burst) = (self.interval.load(Acquire), self.burst.load(Acquire));
        let now = self.now();
        let mut tat = self.tat.load(Acquire);
        loop {
            let converted = if interval == 0 {
                tat
            } else if old_interval == 0 {
                // From unlimited: a full bucket.
                now
            } else {
                let (old_t, new_t) = (i128::from(old_interval), i128::from(interval));
                let debt = i128::from(tat.saturating_sub(now));
                // Tokens, in units of 1/old_t, capped at the new burst.
                let tokens = (i128::from(old_burst) * old_t - debt).min(i128::from(burst) * old_t);
                let new_debt = (i128::from(burst) * old_t - tokens) * new_t / old_t;
                u64::try_from(i128::from(now) + new_debt).unwrap_or(u64::MAX)
            };
            match self
                .tat
                .compare_exchange_weak(tat, converted, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(current) => tat = current,
            }
        }
        self.interval
            .store(interval, std::sync::atomic::Ordering::Release);
        self.burst
            .store(burst, std::sync::atomic::Ordering::Release);
        self.generation.fetch_add(1, AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn checks_match_governors_gcra() {
        use std::num::NonZeroU32;

        use governor::{Quota, RateLimiter as Governor};

        use crate::rate::TokioClock;

        let rate = Rate::per_second(10).burst(3);
        let ours = Gcra::new(rate);
        let quota = Quota::per_second(NonZeroU32::new(10).unwrap())
            .allow_burst(NonZeroU32::new(3).unwrap());
        let theirs = Governor::direct_with_clock(quota, TokioClock);
        // A fixed, irregular pattern of costs and gaps.
        for step in 0_u32..400 {
            let cost = 1 + step % 3;
            let a = ours.check(cost).is_ok();
            let b = matches!(theirs.check_n(NonZeroU32::new(cost).unwrap()), Ok(Ok(())));
            assert_eq!(a, b, "step {step}, cost {cost}");
            let gap = [0, 7, 33, 50, 100, 180][(step % 6) as usize];
            tokio::time::advance(Duration::from_millis(gap)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_gives_back_what_nobody_reserved_after() {
        let gcra = Arc::new(Gcra::new(Rate::per_second(10)));
        gcra.check(1).unwrap();
        let first = gcra.reserve(1, None).unwrap().expect("must wait");
        let second = gcra.reserve(1, None).unwrap().expect("must wait");
        drop(second);
        assert!(matches!(
            gcra.check(1),
            Err(RateLimitError::OverQuota { .. })
        ));
        drop(first);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(gcra.check(1).is_ok(), "both refunded: free again at 100 ms");
    }
}
