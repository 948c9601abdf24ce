//! The stream operators: `rate_limit`, `rate_limit_shared`, `rate_limit_weighted`,
//! `rate_limit_by`, and their delay / drop / fail policies, on paused time.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use tokio::time::{Instant, sleep, timeout};
use tokio_conc::prelude::*;
use tokio_conc::rate::RateLimitError;
use tokio_stream::wrappers::IntervalStream;

const MS: Duration = Duration::from_millis(1);

/// The time (ms since `start`) at which each item came out.
async fn emitted_at<S: Stream>(s: S, start: Instant) -> Vec<u128> {
    s.map(|_| start.elapsed().as_millis()).collect().await
}

/// An item every `gap`, `n` of them, numbered from 0.
fn arriving_every(gap: Duration, n: usize) -> impl Stream<Item = usize> {
    IntervalStream::new(tokio::time::interval(gap))
        .take(n)
        .enumerate()
        .map(|(i, _)| i)
}

#[tokio::test(start_paused = true)]
async fn the_burst_passes_at_once_then_one_per_interval() {
    for (rate, label) in [
        (Rate::per_second(10), "10/s"),
        (Rate::per_second(10).burst(3), "10/s burst 3"),
        (Rate::per_second(4).burst(2), "4/s burst 2"),
        (Rate::per_second(50).burst(5), "50/s burst 5"),
        (Rate::per_second(1000).burst(10), "1000/s burst 10"),
        (Rate::every(Duration::from_millis(200)), "every 200 ms"),
        (Rate::per_minute(120).burst(4), "120/min burst 4"),
    ] {
        let start = Instant::now();
        let at = emitted_at(stream::iter(0..30).rate_limit(rate), start).await;
        let burst = u128::from(rate.burst_size());
        let interval = rate.interval().as_millis();
        let expected: Vec<u128> = (0..30u128)
            .map(|i| (i + 1).saturating_sub(burst) * interval)
            .collect();
        assert_eq!(at, expected, "{label}");
    }
}

#[tokio::test(start_paused = true)]
async fn ten_simulated_seconds_hold_burst_plus_ten_times_the_rate() {
    let horizon = Duration::from_secs(10);
    for (rate, per_10s) in [
        (Rate::per_second(3), 30),
        (Rate::per_second(7).burst(4), 70),
        (Rate::per_second(100).burst(20), 1000),
        (Rate::per_minute(90).burst(2), 15),
        (Rate::every(Duration::from_millis(333)), 30),
    ] {
        let start = Instant::now();
        let mut s = pin!(stream::iter(0..).rate_limit(rate));
        let mut count = 0_u64;
        while s.next().await.is_some() && start.elapsed() <= horizon {
            count += 1;
        }
        let expected = u64::from(rate.burst_size()) + per_10s;
        assert!(
            count.abs_diff(expected) <= 1,
            "{rate:?}: {count} items in 10 s, expected {expected} ± 1"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_item_is_lost_duplicated_or_reordered() {
    let out: Vec<u32> = stream::iter(0..200)
        .rate_limit(Rate::per_second(100).burst(7))
        .collect()
        .await;
    assert_eq!(out, (0..200).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn items_arriving_slower_than_the_rate_are_not_delayed() {
    let start = Instant::now();
    let at = emitted_at(
        arriving_every(250 * MS, 5).rate_limit(Rate::per_second(10)),
        start,
    )
    .await;
    assert_eq!(at, [0, 250, 500, 750, 1000]);
}

#[tokio::test(start_paused = true)]
async fn a_shared_limiter_bounds_the_sum_over_streams() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(5));
    let start = Instant::now();
    let horizon = Duration::from_secs(10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let s = stream::iter(0..).rate_limit_shared(&limiter);
        tasks.spawn(async move {
            let mut s = pin!(s);
            let mut count = 0_u64;
            while s.next().await.is_some() && start.elapsed() <= horizon {
                count += 1;
            }
            count
        });
    }
    let counts = tasks.join_all().await;
    let total: u64 = counts.iter().sum();
    assert!(
        total.abs_diff(5 + 100) <= 1,
        "streams passed {counts:?}, {total} in all; the bound is 105"
    );
    assert!(
        counts.iter().all(|&c| c > 0),
        "every stream got some: {counts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_limiter_also_bounds_plain_calls() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(2));
    let mut s = pin!(stream::iter(0..).rate_limit_shared(&limiter));
    let start = Instant::now();
    limiter.until_ready().await.unwrap();
    limiter.until_ready().await.unwrap();
    s.next().await.unwrap();
    assert_eq!(start.elapsed(), 100 * MS, "the calls spent the burst");
}

#[tokio::test(start_paused = true)]
async fn keys_have_independent_quotas() {
    let start = Instant::now();
    let requests = stream::iter(["ann", "bob", "ann", "bob", "ann", "cid"]);
    let at: Vec<(&str, u128)> = requests
        .rate_limit_by(|user| *user, Rate::per_second(10))
        .map(|user| (user, start.elapsed().as_millis()))
        .collect()
        .await;
    assert_eq!(
        at,
        [
            ("ann", 0),
            ("bob", 0),
            ("ann", 100),
            ("bob", 100),
            ("ann", 200),
            ("cid", 200),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_streams_forget_quiet_keys() {
    let limiter: KeyedRateLimiter<usize> = KeyedRateLimiter::new(Rate::per_second(2));
    // A new key every 10 ms for 10 s: 1,000 keys, each used once.
    let s = arriving_every(10 * MS, 1_000).rate_limit_by(|i| *i, &limiter);
    let mut s = pin!(s);
    let mut most = 0;
    while s.next().await.is_some() {
        most = most.max(limiter.len());
    }
    assert!(most < 200, "held up to {most} keys at once");
    tokio::time::advance(Duration::from_secs(2)).await;
    limiter.check_key(&usize::MAX).unwrap();
    assert_eq!(limiter.len(), 1, "the quiet keys were dropped");
}

#[tokio::test(start_paused = true)]
async fn weighted_items_are_charged_their_cost() {
    let start = Instant::now();
    let at = emitted_at(
        stream::iter([10_u32, 30, 20, 0, 5])
            .rate_limit_weighted(Rate::per_second(100).burst(30), |c| *c),
        start,
    )
    .await;
    // 10 of 30 at once; 30 needs 10 more (100 ms); 20 needs 200 ms more; 0 is
    // free; 5 needs 50 ms.
    assert_eq!(at, [0, 100, 300, 300, 350]);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "an item costs 31 but the burst is 30")]
async fn under_delay_a_cost_over_the_burst_panics_instead_of_hanging() {
    let s = stream::iter([31_u32]).rate_limit_weighted(Rate::per_second(100).burst(30), |c| *c);
    let _ = timeout(Duration::from_secs(60), s.collect::<Vec<_>>()).await;
}

#[tokio::test(start_paused = true)]
async fn under_fail_a_cost_over_the_burst_is_an_error_for_that_item() {
    let out: Vec<_> = stream::iter([5_u32, 31, 5])
        .rate_limit_weighted(Rate::per_second(100).burst(30), |c| *c)
        .fail_over_quota()
        .collect()
        .await;
    assert_eq!(out[0], Ok(5));
    let refused = out[1].as_ref().unwrap_err();
    assert_eq!(*refused.item(), 31);
    assert_eq!(
        refused.error(),
        &RateLimitError::ExceedsBurst {
            cost: 31,
            burst: 30
        }
    );
    assert_eq!(out[2], Ok(5), "the refusal took nothing from the quota");
}

#[tokio::test(start_paused = true)]
async fn under_drop_a_cost_over_the_burst_is_dropped_and_counted() {
    let s = stream::iter([5_u32, 31, 5])
        .rate_limit_weighted(Rate::per_second(100).burst(30), |c| *c)
        .drop_over_quota();
    let dropped = s.drop_counter();
    assert_eq!(s.collect::<Vec<_>>().await, [5, 5]);
    assert_eq!(dropped.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_drop_policy_drops_what_is_over_and_counts_it() {
    // 100 items, one every 10 ms; a quota of 10/s with a burst of 3.
    let start = Instant::now();
    let s = arriving_every(10 * MS, 100)
        .rate_limit(Rate::per_second(10).burst(3))
        .drop_over_quota();
    let dropped = s.drop_counter();
    let passed: Vec<usize> = s.collect().await;
    // The burst at once, then one per 100 ms over the 990 ms of arrivals.
    assert_eq!(passed, [0, 1, 2, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    assert_eq!(dropped.get(), 100 - passed.len() as u64);
    assert_eq!(start.elapsed(), 990 * MS, "nothing waited");
}

#[tokio::test(start_paused = true)]
async fn the_fail_policy_hands_back_every_refused_item() {
    let out: Vec<Result<usize, _>> = arriving_every(10 * MS, 50)
        .rate_limit(Rate::per_second(20))
        .fail_over_quota()
        .collect()
        .await;
    let passed: Vec<usize> = out
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(passed, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
    let mut all: Vec<usize> = out
        .into_iter()
        .map(|r| r.unwrap_or_else(|refused| refused.into_item()))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..50).collect::<Vec<_>>(), "nothing lost");
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_ends_the_stream_at_once() {
    let ctx = TaskContext::background().with_timeout(250 * MS);
    let start = Instant::now();
    let mut s = pin!(
        stream::iter(0..10)
            .rate_limit(Rate::per_second(10))
            .context(&ctx)
    );
    let mut at = Vec::new();
    while let Some(i) = s.next().await {
        at.push((i, start.elapsed().as_millis()));
    }
    assert_eq!(at, [(0, 0), (1, 100), (2, 200)]);
    assert_eq!(
        start.elapsed(),
        200 * MS,
        "ended without sleeping to 300 ms"
    );
    assert_eq!(
        s.stopped_by(),
        Some(&RateLimitError::WouldExceedDeadline {
            ready_at: start + 300 * MS,
            deadline: start + 250 * MS,
        })
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_context_ends_a_waiting_stream_and_drops_the_item() {
    let ctx = TaskContext::background();
    let item = Arc::new(());
    let s = stream::iter([Arc::clone(&item), Arc::clone(&item)])
        .rate_limit(Rate::every(Duration::from_secs(3600)))
        .context(&ctx);
    let mut s = pin!(s);
    drop(s.next().await.unwrap());
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let next = timeout(Duration::from_secs(10), s.next())
        .await
        .expect("cancellation must end the wait");
    assert!(next.is_none());
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        s.stopped_by(),
        Some(&RateLimitError::Context(ContextError::Cancelled))
    );
    assert_eq!(Arc::strong_count(&item), 1, "the waiting item was dropped");
    assert!(s.next().await.is_none(), "and it stays ended");
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_context_ends_a_stream_whose_input_is_idle() {
    let ctx = TaskContext::background();
    let s = stream::pending::<u8>()
        .rate_limit(Rate::per_second(1))
        .drop_over_quota()
        .context(&ctx);
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        canceller.cancel_with(std::io::Error::other("shutting down"));
    });
    let out = timeout(Duration::from_secs(10), s.collect::<Vec<_>>())
        .await
        .expect("cancellation must end an idle stream");
    assert!(out.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_limiter_context_binds_its_streams() {
    let ctx = TaskContext::background();
    let limiter = RateLimiter::new(Rate::per_second(1)).context(&ctx);
    let s = stream::iter(0..5).rate_limit_shared(&limiter);
    ctx.cancel();
    assert_eq!(s.count().await, 0);
}

#[tokio::test(start_paused = true)]
async fn the_operator_spawns_no_task() {
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mut s = pin!(
        stream::iter(0..3)
            .rate_limit(Rate::per_second(10))
            .context(&TaskContext::background())
    );
    s.next().await;
    s.next().await;
    let during = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(during, before);
}

#[test]
fn limiters_and_streams_can_move_between_tasks() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send + 'static>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limiter = RateLimiter::new(Rate::per_second(1));
    send_sync(&limiter);
    send_sync(&KeyedRateLimiter::<String>::new(Rate::per_second(1)));
    send(&stream::iter(0..3).rate_limit_shared(&limiter));
    send(
        &stream::iter(0..3)
            .rate_limit_weighted(&limiter, |_| 1)
            .fail_over_quota(),
    );
    send(
        &stream::iter(0..3)
            .rate_limit_by(|i| *i, Rate::per_second(1))
            .drop_over_quota()
            .context(&TaskContext::background()),
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_abandoned_mid_wait_holds_up_the_others_only_briefly() {
    let limiter = RateLimiter::new(Rate::per_second(10));
    let mut abandoned = Box::pin(stream::iter(0..).rate_limit_shared(&limiter));
    abandoned.next().await.unwrap();
    // Into its wait (it takes the turn), then never polled again.
    assert!(futures::poll!(abandoned.next()).is_pending());

    let start = Instant::now();
    let mut other = pin!(stream::iter(0..).rate_limit_shared(&limiter));
    let next = timeout(Duration::from_secs(60), other.next()).await;
    assert_eq!(next.expect("must not wait for ever"), Some(0));
    // The abandoned stream's lease: its wake-up at 100 ms plus 100 ms of grace.
    assert_eq!(start.elapsed(), 200 * MS);

    let plain = timeout(Duration::from_secs(60), limiter.until_ready()).await;
    plain.expect("must not wait for ever").unwrap();
    assert_eq!(start.elapsed(), 300 * MS);
}

/// Key functions take one closure kind everywhere (`Fn(&T) -> K + Send +
/// Sync + 'static`): the very same closure value serves `partition`,
/// `partition_with` and `rate_limit_by`.
#[tokio::test(start_paused = true)]
async fn one_key_function_serves_every_keyed_operator() {
    let by_user = |order: &(&'static str, u32)| order.0;
    let orders = || stream::iter([("ann", 1), ("bob", 2), ("ann", 3)]);

    let lanes = orders().partition(2, by_user);
    let routed: usize = futures::future::join_all(lanes.into_iter().map(|l| l.count()))
        .await
        .into_iter()
        .sum();
    assert_eq!(routed, 3);
    let lanes = orders().partition_with(2, 1, by_user);
    assert_eq!(lanes.len(), 2);
    let passed: Vec<_> = orders()
        .rate_limit_by(by_user, Rate::per_second(1))
        .drop_over_quota()
        .collect()
        .await;
    assert_eq!(passed, [("ann", 1), ("bob", 2)]);
}
