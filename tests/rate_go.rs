//! Go's own `x/time/rate` tests (`rate_test.go`) ported to `RateLimiter`,
//! and the regression that a waiter holds its place. All on paused time:
//! exact to the nanosecond.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_conc::prelude::*;

mod common;
use common::within;
use tokio_conc::rate::RateLimitError;

const MS: Duration = Duration::from_millis(1);

/// The regression: at 10/s with a burst of 2, an `until_n_ready(2)` waiter
/// never finished in 10 s while a `check()` every 100 ms was granted all
/// 100 times — each check took the one token that had refilled. Now the
/// waiter reserves both tokens when it starts to wait.
#[tokio::test(start_paused = true)]
async fn a_waiter_holds_its_place_against_later_checks() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(2));
    let start = Instant::now();
    limiter.check_n(2).unwrap(); // drained
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move {
            limiter.until_n_ready(2).await.unwrap();
            start.elapsed()
        }
    });
    tokio::task::yield_now().await; // into its wait
    let mut granted = Vec::new();
    for k in 1..=100_u32 {
        sleep_until(start + 100 * MS * k).await;
        if limiter.check().is_ok() {
            granted.push(k * 100);
        }
    }
    let waited = within("the waiter", waiter).await.unwrap();
    assert_eq!(waited, 200 * MS, "two tokens at 10/s after the drain");
    // The checks at 100 and 200 ms found the tokens reserved.
    assert_eq!(granted.first(), Some(&300));
    assert_eq!(granted.len(), 98);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_stream_holds_its_place_against_later_checks() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(2));
    let start = Instant::now();
    let items = stream::iter(0..10).rate_limit_weighted(&limiter, |_| 2);
    let consumer =
        tokio::spawn(async move { items.map(|_| start.elapsed()).collect::<Vec<_>>().await });
    let mut granted = 0;
    for k in 1..=30_u32 {
        sleep_until(start + 50 * MS * k).await;
        granted += usize::from(limiter.check().is_ok());
    }
    let at = within("the stream", consumer).await.unwrap();
    // One item of cost 2 every 200 ms, however often others check.
    let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]);
    assert!(
        granted <= 1,
        "checks got {granted} tokens while the stream waited"
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_the_order_they_came() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(4));
    limiter.check_n(4).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, cost) in [(0, 4), (1, 1), (2, 1), (3, 4), (4, 1)] {
        let (limiter, order) = (limiter.clone(), order.clone());
        tasks.spawn(async move {
            limiter.until_n_ready(cost).await.unwrap();
            order.lock().unwrap().push(i);
        });
        tokio::task::yield_now().await;
    }
    within("the waiters", tasks.join_all()).await;
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

/// Go's `TestSimultaneousRequests`: of many checks at one instant, exactly
/// the burst passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_checks_pass_exactly_the_burst() {
    let limiter = RateLimiter::new(Rate::per_minute(1).burst(5));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..15 {
        let (limiter, ok) = (limiter.clone(), ok.clone());
        tasks.spawn(async move {
            if limiter.check().is_ok() {
                ok.fetch_add(1, SeqCst);
            }
        });
    }
    tasks.join_all().await;
    assert_eq!(ok.load(SeqCst), 5);
}

/// Go's `TestWaitSimple`.
#[tokio::test(start_paused = true)]
async fn wait_simple() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(3));
    let cancelled = TaskContext::background();
    cancelled.cancel();
    assert_eq!(
        limiter.clone().context(&cancelled).until_ready().await,
        Err(RateLimitError::Context(ContextError::Cancelled)),
        "already cancelled"
    );
    assert_eq!(
        limiter.until_n_ready(4).await,
        Err(RateLimitError::ExceedsBurst { cost: 4, burst: 3 })
    );
    let start = Instant::now();
    limiter.until_n_ready(2).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "act now");
    limiter.until_n_ready(3).await.unwrap();
    assert_eq!(start.elapsed(), 200 * MS, "act later");
}

/// Go's `TestWaitCancel`: a wait cancelled before its time gives its tokens
/// back.
#[tokio::test(start_paused = true)]
async fn wait_cancelled_gives_the_tokens_back() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(3));
    let start = Instant::now();
    let ctx = TaskContext::background();
    let scoped = limiter.clone().context(&ctx);
    scoped.until_n_ready(2).await.unwrap(); // one token left
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(100 * MS).await;
        canceller.cancel();
    });
    assert_eq!(
        scoped.until_n_ready(3).await,
        Err(RateLimitError::Context(ContextError::Cancelled))
    );
    assert_eq!(start.elapsed(), 100 * MS);
    // The three reserved tokens came back: 1 left + 1 refilled = 2 now.
    assert_eq!(limiter.check_n(2), Ok(()));
    assert!(limiter.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_wait_gives_the_tokens_back() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(3));
    limiter.check_n(3).unwrap();
    let gave_up = timeout(50 * MS, limiter.until_n_ready(3)).await;
    assert!(gave_up.is_err());
    // Without the refund the next 3 would come at 600 ms.
    let start = Instant::now();
    limiter.until_n_ready(3).await.unwrap();
    assert_eq!(start.elapsed(), 250 * MS, "ready at 300 ms from the drain");
}

/// Go's `TestWaitTimeout`: a wait that cannot end by the deadline fails at
/// once, without sleeping.
#[tokio::test(start_paused = true)]
async fn wait_past_the_deadline_fails_at_once() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(3));
    let ctx = TaskContext::background().with_timeout(100 * MS);
    let scoped = limiter.clone().context(&ctx);
    let start = Instant::now();
    scoped.until_n_ready(2).await.unwrap();
    let err = scoped.until_n_ready(3).await.unwrap_err();
    assert!(
        matches!(err, RateLimitError::WouldExceedDeadline { .. }),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.check(), Ok(()), "the refused wait reserved nothing");
}

/// A wait that ends exactly at the deadline goes ahead (Go refuses only
/// waits that would exceed it).
#[tokio::test(start_paused = true)]
async fn a_wait_ending_exactly_at_the_deadline_goes_ahead() {
    let start = Instant::now();
    let ctx = TaskContext::background().with_timeout(100 * MS);
    let limiter = RateLimiter::new(Rate::per_second(10)).context(&ctx);
    limiter.until_ready().await.unwrap();
    assert_eq!(limiter.until_ready().await, Ok(()));
    assert_eq!(start.elapsed(), 100 * MS);

    // A stream too: the item due at the deadline passes, the next does not.
    let ctx = TaskContext::background().with_timeout(200 * MS);
    let start = Instant::now();
    let mut s = pin!(
        stream::iter(0..5)
            .rate_limit(Rate::per_second(10))
            .context(&ctx)
    );
    let mut at = Vec::new();
    while let Some(i) = s.next().await {
        at.push((i, start.elapsed().as_millis()));
    }
    assert_eq!(at, [(0, 0), (1, 100), (2, 200)]);

    // And a keyed limiter.
    let ctx = TaskContext::background().with_timeout(100 * MS);
    let start = Instant::now();
    let keyed = tokio_conc::rate::KeyedRateLimiter::new(Rate::per_second(10)).context(&ctx);
    keyed.until_key_ready(&"k").await.unwrap();
    assert_eq!(keyed.until_key_ready(&"k").await, Ok(()));
    assert_eq!(start.elapsed(), 100 * MS);
}

/// Go's `TestWaitInf`: an unlimited rate never waits and never refuses,
/// whatever the cost.
#[tokio::test(start_paused = true)]
async fn an_unlimited_rate_never_waits() {
    let limiter = RateLimiter::new(Rate::unlimited());
    let start = Instant::now();
    limiter.until_n_ready(3).await.unwrap();
    for _ in 0..10_000 {
        limiter.check_n(1000).unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    let items = stream::iter(0..1000)
        .rate_limit(Rate::unlimited())
        .count()
        .await;
    assert_eq!(items, 1000);
    assert_eq!(start.elapsed(), Duration::ZERO);
    let keyed = tokio_conc::rate::KeyedRateLimiter::new(Rate::unlimited());
    for _ in 0..1000 {
        keyed.check_key(&"k").unwrap();
    }
}

/// Go's `TestReserveSetLimit`: the tokens are kept, and refill at the new
/// rate.
#[tokio::test(start_paused = true)]
async fn set_rate_keeps_the_tokens_and_refills_at_the_new_rate() {
    let limiter = RateLimiter::new(Rate::per_second(5).burst(2));
    let start = Instant::now();
    limiter.until_n_ready(2).await.unwrap();
    sleep_until(start + 200 * MS).await;
    let first = tokio::spawn({
        let limiter = limiter.clone();
        async move {
            limiter.until_n_ready(2).await.unwrap();
            start.elapsed()
        }
    });
    tokio::task::yield_now().await;
    limiter.set_rate(Rate::per_second(10).burst(2));
    limiter.until_ready().await.unwrap();
    assert_eq!(
        start.elapsed(),
        400 * MS,
        "one token short of zero, at 10/s"
    );
    assert_eq!(
        first.await.unwrap(),
        400 * MS,
        "kept the instant it reserved"
    );
}

/// Go's `TestReserveSetBurst`.
#[tokio::test(start_paused = true)]
async fn set_burst_keeps_the_tokens() {
    let limiter = RateLimiter::new(Rate::per_second(5).burst(2));
    let start = Instant::now();
    limiter.until_n_ready(2).await.unwrap();
    sleep_until(start + 200 * MS).await;
    let reserved = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.until_n_ready(2).await }
    });
    tokio::task::yield_now().await;
    sleep_until(start + 300 * MS).await;
    limiter.set_burst(4);
    // Half a token in debt at 300 ms; four more take 4.5 tokens: 900 ms.
    limiter.until_n_ready(4).await.unwrap();
    assert_eq!(start.elapsed(), 1200 * MS);
    reserved.await.unwrap().unwrap();
}

/// Go's `TestReserveSetLimitCancel`: a wait given up after the rate changed
/// still gives its tokens back.
#[tokio::test(start_paused = true)]
async fn a_wait_given_up_after_set_rate_gives_the_tokens_back() {
    let limiter = RateLimiter::new(Rate::per_second(5).burst(2));
    let start = Instant::now();
    limiter.until_n_ready(2).await.unwrap();
    let ctx = TaskContext::background();
    let waiter = tokio::spawn({
        let limiter = limiter.clone().context(&ctx);
        async move { limiter.until_n_ready(2).await }
    });
    tokio::task::yield_now().await;
    sleep_until(start + 200 * MS).await;
    limiter.set_rate(Rate::per_second(10).burst(2));
    ctx.cancel();
    assert!(waiter.await.unwrap().is_err());
    limiter.until_n_ready(2).await.unwrap();
    assert_eq!(start.elapsed(), 300 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_new_rate_reaches_every_clone_and_stream() {
    let limiter = RateLimiter::new(Rate::per_second(1));
    let start = Instant::now();
    let mut s = pin!(stream::iter(0..).rate_limit_shared(&limiter));
    assert_eq!(s.next().await, Some(0));
    assert_eq!(s.next().await, Some(1));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    limiter.clone().set_rate(Rate::per_second(100));
    assert_eq!(limiter.rate(), Rate::per_second(100));
    // The slot item 1 used is repaid at the new rate: item 2 after 10 ms.
    assert_eq!(s.next().await, Some(2));
    assert_eq!(start.elapsed(), Duration::from_secs(1) + 10 * MS);
    assert_eq!(s.next().await, Some(3));
    assert_eq!(start.elapsed(), Duration::from_secs(1) + 20 * MS);
}

#[tokio::test(start_paused = true)]
async fn switching_the_limit_off_and_on() {
    let limiter = RateLimiter::new(Rate::per_second(1).burst(2));
    limiter.check_n(2).unwrap();
    assert!(limiter.check().is_err());
    limiter.set_rate(Rate::unlimited());
    for _ in 0..100 {
        limiter.check().unwrap();
    }
    limiter.set_rate(Rate::per_second(1).burst(2));
    assert_eq!(limiter.check_n(2), Ok(()), "back on with a full burst");
    assert!(limiter.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_smaller_burst_caps_the_tokens() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(5));
    limiter.set_burst(2);
    assert_eq!(
        limiter.check_n(3),
        Err(RateLimitError::ExceedsBurst { cost: 3, burst: 2 })
    );
    assert_eq!(limiter.check_n(2), Ok(()));
    assert!(limiter.check().is_err(), "five tokens were capped at two");
}

#[test]
#[should_panic(expected = "`set_burst(n)`: `n` must be at least 1, got 0")]
fn a_zero_burst_panics_naming_the_argument() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    RateLimiter::new(Rate::per_second(1)).set_burst(0);
}
