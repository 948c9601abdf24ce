//! Property: whatever the rate, burst and arrival pattern, what comes out of a
//! rate-limited stream never breaks the GCRA bound — any window of length `T`
//! holds at most `burst + T / interval` items — and nothing is lost.
//!
//! With wake-ups that come late (a waiter charged as of the instant it was
//! due comes out later), the count since the start still never runs ahead of
//! the rate, and a window holds at most one item more per waiting stream.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker;
use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_conc::prelude::*;

/// Items arriving after the given gaps (in ms), numbered from 0.
fn arrivals(gaps: Vec<u64>) -> impl Stream<Item = usize> {
    stream::iter(gaps.into_iter().enumerate()).then(|(i, gap)| async move {
        sleep(Duration::from_millis(gap)).await;
        i
    })
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Checks every window `[at[i], at[j]]`: `j - i + 1` items in `at[j] - at[i]`.
fn assert_gcra_bound(at: &[Duration], interval: Duration, burst: u32) -> Result<(), TestCaseError> {
    for i in 0..at.len() {
        for j in i..at.len() {
            let span = at[j] - at[i];
            let allowed = u128::from(burst) + span.as_nanos() / interval.as_nanos();
            let items = (j - i + 1) as u128;
            prop_assert!(
                items <= allowed,
                "{items} items in {span:?}, but interval {interval:?} burst {burst} allows {allowed}"
            );
        }
    }
    Ok(())
}

/// Runs `fut`, polling it only every `tick` (from `origin`): its own wake-ups
/// go unheard until the next tick, as with a coarse, late timer.
async fn on_ticks<F: Future>(fut: F, tick: Duration, origin: Instant) -> F::Output {
    let mut fut = pin!(fut);
    let waker = noop_waker();
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return out;
        }
        let ticks = Instant::now().duration_since(origin).as_nanos() / tick.as_nanos() + 1;
        sleep_until(origin + tick * u32::try_from(ticks).unwrap()).await;
    }
}

/// The instants (since `origin`) a stream's items come out when it is only
/// polled every `tick`.
async fn late_passes<S: Stream>(s: S, tick: Duration, origin: Instant) -> Vec<Duration> {
    let mut s = pin!(s);
    let mut at = Vec::new();
    while on_ticks(s.next(), tick, origin).await.is_some() {
        at.push(origin.elapsed());
    }
    at
}

/// The bound under late wake-ups, for sorted instants since the start: no
/// prefix runs ahead of the rate, and a window holds at most `waiters` items
/// more than GCRA's bound.
fn assert_late_bound(
    at: &[Duration],
    interval: Duration,
    burst: u32,
    waiters: u128,
) -> Result<(), TestCaseError> {
    for (items, t) in (1_u128..).zip(at) {
        let allowed = u128::from(burst) + t.as_nanos() / interval.as_nanos();
        prop_assert!(
            items <= allowed,
            "{items} items by {t:?}, the rate allows {allowed}"
        );
    }
    for i in 0..at.len() {
        for j in i..at.len() {
            let span = at[j] - at[i];
            let allowed = u128::from(burst) + waiters + span.as_nanos() / interval.as_nanos();
            let items = (j - i + 1) as u128;
            prop_assert!(
                items <= allowed,
                "{items} items in {span:?}, more than {allowed}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn delay_never_breaks_the_bound_and_loses_nothing(
        interval_ms in 1_u64..200,
        burst in 1_u32..8,
        gaps in prop::collection::vec(prop_oneof![Just(0_u64), 0_u64..300], 1..60),
    ) {
        let n = gaps.len();
        let interval = Duration::from_millis(interval_ms);
        let (at, items) = paused_runtime().block_on(async move {
            let start = Instant::now();
            let out: Vec<(usize, Duration)> = arrivals(gaps)
                .rate_limit(Rate::every(interval).burst(burst))
                .map(|i| (i, start.elapsed()))
                .collect()
                .await;
            let items: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
            let at: Vec<Duration> = out.into_iter().map(|(_, t)| t).collect();
            (at, items)
        });
        prop_assert_eq!(items, (0..n).collect::<Vec<_>>());
        assert_gcra_bound(&at, interval, burst)?;
    }

    #[test]
    fn drop_never_breaks_the_bound_and_counts_every_drop(
        interval_ms in 1_u64..200,
        burst in 1_u32..8,
        gaps in prop::collection::vec(prop_oneof![Just(0_u64), 0_u64..300], 1..60),
    ) {
        let n = gaps.len() as u64;
        let interval = Duration::from_millis(interval_ms);
        let (at, dropped) = paused_runtime().block_on(async move {
            let start = Instant::now();
            let s = arrivals(gaps)
                .rate_limit(Rate::every(interval).burst(burst))
                .drop_over_quota();
            let dropped = s.drop_counter();
            let at: Vec<Duration> = s.map(|_| start.elapsed()).collect().await;
            (at, dropped.get())
        });
        prop_assert_eq!(at.len() as u64 + dropped, n);
        assert_gcra_bound(&at, interval, burst)?;
    }

    #[test]
    fn streams_sharing_a_limiter_keep_the_bound_together(
        interval_ms in 1_u64..100,
        burst in 1_u32..6,
        gaps_a in prop::collection::vec(0_u64..100, 1..30),
        gaps_b in prop::collection::vec(0_u64..100, 1..30),
    ) {
        let interval = Duration::from_millis(interval_ms);
        let at = paused_runtime().block_on(async move {
            let limiter = RateLimiter::new(Rate::every(interval).burst(burst));
            let start = Instant::now();
            let a = arrivals(gaps_a).rate_limit_shared(&limiter).map(|_| start.elapsed());
            let b = arrivals(gaps_b).rate_limit_shared(&limiter).map(|_| start.elapsed());
            let mut at: Vec<Duration> = stream::select(a, b).collect().await;
            at.sort_unstable();
            at
        });
        assert_gcra_bound(&at, interval, burst)?;
    }

    #[test]
    fn late_wake_ups_never_run_ahead_of_the_rate(
        interval_ms in 1_u64..50,
        burst in 1_u32..5,
        tick_a in 1_u64..80,
        tick_b in 1_u64..80,
        gaps_a in prop::collection::vec(prop_oneof![Just(0_u64), 0_u64..60], 1..40),
        gaps_b in prop::collection::vec(prop_oneof![Just(0_u64), 0_u64..60], 1..40),
    ) {
        let (n_a, n_b) = (gaps_a.len(), gaps_b.len());
        let interval = Duration::from_millis(interval_ms);
        let rate = Rate::every(interval).burst(burst);
        let (alone, a, b) = paused_runtime().block_on(async move {
            let origin = Instant::now();
            let alone = arrivals(gaps_a.clone()).rate_limit(rate);
            let alone = late_passes(alone, Duration::from_millis(tick_a), origin).await;

            let limiter = RateLimiter::new(rate);
            let origin = Instant::now();
            let a = arrivals(gaps_a).rate_limit_shared(&limiter);
            let b = arrivals(gaps_b).rate_limit_shared(&limiter);
            let (a, b) = tokio::join!(
                late_passes(a, Duration::from_millis(tick_a), origin),
                late_passes(b, Duration::from_millis(tick_b), origin),
            );
            (alone, a, b)
        });
        prop_assert_eq!((alone.len(), a.len(), b.len()), (n_a, n_a, n_b));
        assert_late_bound(&alone, interval, burst, 1)?;
        let mut both = [a, b].concat();
        both.sort_unstable();
        assert_late_bound(&both, interval, burst, 2)?;
    }
}
