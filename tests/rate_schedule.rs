//! Late wake-ups do not slow the schedule: a waiter that wakes after its
//! turn is charged as of the instant it was due, so lateness never
//! accumulates and the long-run rate is the configured one.
//!
//! Paused time fires timers exactly on time, so these tests make the lateness
//! themselves: [`on_ticks`] polls a future only on a coarse grid, as if its
//! timers fired on the next tick of a coarse timer wheel (Tokio's real
//! timers fire on millisecond ticks, a little late).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker;
use futures::{Stream, StreamExt, stream};
use tokio::time::{Instant, sleep_until};
use tokio_conc::prelude::*;
use tokio_conc::rate::KeyedRateLimiter;

const MS: Duration = Duration::from_millis(1);
const HORIZON: Duration = Duration::from_secs(10);

/// Runs `fut` to completion, polling it only at `origin + k * tick`: its own
/// wake-ups go unheard until the next tick, so it always resumes late.
async fn on_ticks<F: Future>(fut: F, tick: Duration, origin: Instant) -> F::Output {
    let mut fut = pin!(fut);
    let waker = noop_waker();
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return out;
        }
        let ticks = Instant::now().duration_since(origin).as_nanos() / tick.as_nanos() + 1;
        let ticks = u32::try_from(ticks).expect("a short test");
        sleep_until(origin + tick * ticks).await;
    }
}

/// The instants (since `start`) at which `s`'s items come out within
/// [`HORIZON`], when its wake-ups are only heard on a `tick` grid.
async fn passes_on_ticks<S: Stream + Unpin>(mut s: S, tick: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut at = Vec::new();
    while on_ticks(s.next(), tick, start).await.is_some() && start.elapsed() <= HORIZON {
        at.push(start.elapsed());
    }
    at
}

/// The guarantees under late wake-ups, for passes at `at` (since the start):
/// the count over the horizon is `burst + rate * horizon` (± 1), no prefix
/// ever holds more than `burst + elapsed / interval` items (the long-run rate
/// is never exceeded), and any window holds at most one item more than GCRA's
/// `burst + span / interval`: the late item, charged as of its due instant.
fn assert_schedule_kept(at: &[Duration], rate: Rate, label: &str) {
    let interval = rate.interval().as_nanos();
    let burst = u128::from(rate.burst_size());
    let expected = burst + HORIZON.as_nanos() / interval;
    let count = at.len() as u128;
    assert!(
        count.abs_diff(expected) <= 1,
        "{label}: {count} items in {HORIZON:?}, expected {expected} ± 1"
    );
    for (items, t) in (1_u128..).zip(at) {
        let allowed = burst + t.as_nanos() / interval;
        assert!(
            items <= allowed,
            "{label}: {items} items by {t:?}, the rate allows {allowed}"
        );
    }
    for i in 0..at.len() {
        for j in i..at.len() {
            let allowed = burst + 1 + (at[j] - at[i]).as_nanos() / interval;
            assert!(
                (j - i + 1) as u128 <= allowed,
                "{label}: {} items in {:?}, more than {allowed}",
                j - i + 1,
                at[j] - at[i]
            );
        }
    }
}

/// Every 10 ms, heard on 3, 7 and 9 ms ticks: each wake-up is late by up to
/// 9 ms. Checked at the wake-up instant, the next item would be scheduled from
/// there and a 7 ms grid would give one item per 14 ms (714 in 10 s).
const CASES: [(u32, u32); 3] = [(10, 3), (10, 7), (10, 9)];

#[tokio::test(start_paused = true)]
async fn late_wake_ups_do_not_slow_a_smooth_stream() {
    for (interval, tick) in CASES {
        let rate = Rate::every(interval * MS);
        let at = passes_on_ticks(stream::iter(0..).rate_limit(rate), tick * MS).await;
        assert_schedule_kept(
            &at,
            rate,
            &format!("rate_limit every {interval} ms, tick {tick}"),
        );
    }
}

#[tokio::test(start_paused = true)]
async fn late_wake_ups_do_not_slow_weighted_or_keyed_streams() {
    for (interval, tick) in CASES {
        let rate = Rate::every(interval * MS);
        let label = format!("weighted every {interval} ms, tick {tick}");
        let weighted = stream::iter(0..).rate_limit_weighted(rate, |_| 1);
        assert_schedule_kept(&passes_on_ticks(weighted, tick * MS).await, rate, &label);

        let label = format!("keyed every {interval} ms, tick {tick}");
        let keyed = stream::iter(0..).rate_limit_by(|_| "one key", rate);
        assert_schedule_kept(&passes_on_ticks(keyed, tick * MS).await, rate, &label);
    }
}

#[tokio::test(start_paused = true)]
async fn late_wake_ups_do_not_slow_until_ready() {
    for (interval, tick) in CASES {
        let rate = Rate::every(interval * MS);
        let limiter = RateLimiter::new(rate);
        let start = Instant::now();
        let mut at = Vec::new();
        loop {
            on_ticks(limiter.until_ready(), tick * MS, start)
                .await
                .unwrap();
            if start.elapsed() > HORIZON {
                break;
            }
            at.push(start.elapsed());
        }
        let label = format!("until_ready every {interval} ms, tick {tick}");
        assert_schedule_kept(&at, rate, &label);
    }
}

#[tokio::test(start_paused = true)]
async fn late_wake_ups_do_not_slow_until_key_ready() {
    for (interval, tick) in CASES {
        let rate = Rate::every(interval * MS);
        let limiter = KeyedRateLimiter::new(rate);
        let start = Instant::now();
        let mut at = Vec::new();
        loop {
            on_ticks(limiter.until_key_ready(&"ann"), tick * MS, start)
                .await
                .unwrap();
            if start.elapsed() > HORIZON {
                break;
            }
            at.push(start.elapsed());
        }
        let label = format!("until_key_ready every {interval} ms, tick {tick}");
        assert_schedule_kept(&at, rate, &label);
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_waiter_keeps_the_slot_it_reserved() {
    let limiter = RateLimiter::new(Rate::every(100 * MS));
    let start = Instant::now();
    let mut waiting = pin!(stream::iter(0..).rate_limit_shared(&limiter));
    assert_eq!(waiting.next().await, Some(0));
    // Item 1 reserves the slot at 100 ms, but its stream is not polled until
    // 150 ms; a plain check at 120 ms finds the slot taken.
    assert!(futures::poll!(waiting.next()).is_pending());
    sleep_until(start + 120 * MS).await;
    let refused = limiter.check().expect_err("the slot at 100 ms is reserved");
    assert_eq!(refused.ready_at(), Some(start + 200 * MS));
    sleep_until(start + 150 * MS).await;
    assert_eq!(waiting.next().await, Some(1));
    assert_eq!(start.elapsed(), 150 * MS, "out as soon as it is polled");
    // The next item reserves the slot after it.
    assert_eq!(waiting.next().await, Some(2));
    assert_eq!(start.elapsed(), 200 * MS);
}
