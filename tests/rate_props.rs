//! Property: whatever the rate, burst and arrival pattern, what comes out of a
//! rate-limited stream never breaks the GCRA bound — any window of length `T`
//! holds at most `burst + T / interval` items — and nothing is lost.

use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio::time::{Instant, sleep};
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
}
