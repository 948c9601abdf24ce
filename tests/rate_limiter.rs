//! The plain limiters: `RateLimiter` and `KeyedRateLimiter`, on paused time.

use std::time::Duration;

use tokio::time::{Instant, advance, timeout};
use tokio_conc::prelude::*;
use tokio_conc::rate::{InvalidRate, RateLimitError};

const MS: Duration = Duration::from_millis(1);

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(start_paused = true)]
async fn until_ready_lets_the_burst_pass_then_one_per_interval() {
    for (per_second, burst) in [(10, 1), (10, 3), (4, 2), (50, 5)] {
        let rate = Rate::per_second(per_second).burst(burst);
        let limiter = RateLimiter::new(rate);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..12 {
            limiter.until_ready().await.unwrap();
            at.push(ms(start.elapsed()));
        }
        let interval = ms(rate.interval());
        let expected: Vec<u128> = (0..12u128)
            .map(|i| (i + 1).saturating_sub(u128::from(burst)) * interval)
            .collect();
        assert_eq!(at, expected, "{per_second}/s burst {burst}");
    }
}

#[tokio::test(start_paused = true)]
async fn check_never_waits_and_says_when_it_would_pass() {
    let limiter = RateLimiter::new(Rate::per_second(4).burst(2));
    let start = Instant::now();
    assert_eq!(limiter.check(), Ok(()));
    assert_eq!(limiter.check(), Ok(()));
    let err = limiter.check().unwrap_err();
    assert_eq!(
        err,
        RateLimitError::OverQuota {
            ready_at: start + 250 * MS
        }
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    advance(250 * MS).await;
    assert_eq!(limiter.check(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn weighted_permits_are_charged() {
    let limiter = RateLimiter::new(Rate::per_second(100).burst(50));
    let start = Instant::now();
    limiter.until_n_ready(50).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.until_n_ready(20).await.unwrap();
    assert_eq!(start.elapsed(), 200 * MS, "20 permits at 100/s");
    limiter.until_n_ready(0).await.unwrap();
    assert_eq!(start.elapsed(), 200 * MS, "a zero cost is free");
    assert!(limiter.check_n(1).is_err(), "the 20 were really taken");
}

#[tokio::test(start_paused = true)]
async fn a_cost_over_the_burst_fails_at_once_instead_of_hanging() {
    let limiter = RateLimiter::new(Rate::per_second(1).burst(4));
    let start = Instant::now();
    let result = timeout(Duration::from_secs(60), limiter.until_n_ready(5))
        .await
        .expect("must not hang");
    assert_eq!(
        result,
        Err(RateLimitError::ExceedsBurst { cost: 5, burst: 4 })
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.check_n(4), Ok(()), "the failed call took nothing");
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_fails_at_once() {
    let ctx = TaskContext::background().with_timeout(250 * MS);
    let limiter = RateLimiter::new(Rate::per_second(2)).context(&ctx);
    let start = Instant::now();
    limiter.until_ready().await.unwrap();
    let err = limiter.until_ready().await.unwrap_err();
    assert_eq!(
        err,
        RateLimitError::WouldExceedDeadline {
            ready_at: start + 500 * MS,
            deadline: start + 250 * MS,
        }
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "failed without sleeping");
    assert!(!ctx.is_cancelled(), "and before the deadline came");
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_ends_before_the_deadline_goes_ahead() {
    let ctx = TaskContext::background().with_timeout(600 * MS);
    let limiter = RateLimiter::new(Rate::per_second(2)).context(&ctx);
    let start = Instant::now();
    limiter.until_ready().await.unwrap();
    limiter.until_ready().await.unwrap();
    assert_eq!(start.elapsed(), 500 * MS);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_context_ends_the_wait_at_once() {
    let ctx = TaskContext::background();
    let limiter = RateLimiter::new(Rate::every(Duration::from_secs(3600))).context(&ctx);
    limiter.until_ready().await.unwrap();
    let start = Instant::now();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let result = timeout(Duration::from_secs(10), limiter.until_ready())
        .await
        .expect("the wait must end when the context is cancelled");
    assert_eq!(
        result,
        Err(RateLimitError::Context(ContextError::Cancelled))
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(matches!(limiter.check(), Err(RateLimitError::Context(_))));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_quota_across_tasks() {
    let rate = Rate::per_second(20).burst(5);
    let limiter = RateLimiter::new(rate);
    let start = Instant::now();
    let horizon = Duration::from_secs(10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let limiter = limiter.clone();
        tasks.spawn(async move {
            let mut passed = 0_u32;
            loop {
                limiter.until_ready().await.unwrap();
                if start.elapsed() > horizon {
                    return passed;
                }
                passed += 1;
            }
        });
    }
    let counts = tasks.join_all().await;
    let total: u32 = counts.iter().sum();
    let (least, most) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    // The burst goes to whoever asks first; after it, waiters are served in turn.
    assert!(most - least <= 5 + 1, "uneven shares: {counts:?}");
    // In [0, 10 s]: the burst, then one every 50 ms.
    let bound = 5 + 200;
    assert!(
        total.abs_diff(bound) <= 1,
        "4 tasks passed {total}, bound {bound}"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_have_independent_quotas() {
    let limiter = KeyedRateLimiter::new(Rate::per_second(10).burst(2));
    let start = Instant::now();
    let ann = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for _ in 0..12 {
                limiter.until_key_ready(&"ann").await.unwrap();
            }
            start.elapsed()
        })
    };
    let bob = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                limiter.until_key_ready(&"bob").await.unwrap();
            }
            start.elapsed()
        })
    };
    // Each key: 2 at once, then one per 100 ms — unaffected by the other.
    assert_eq!(ann.await.unwrap(), Duration::from_secs(1));
    assert_eq!(bob.await.unwrap(), 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn quiet_keys_are_forgotten() {
    let limiter = KeyedRateLimiter::new(Rate::per_second(10).burst(3));
    for user in 0..1_000_u32 {
        limiter.check_key(&user).unwrap();
    }
    assert_eq!(limiter.len(), 1_000);
    // Still within their refill time: the keys matter and are kept.
    advance(50 * MS).await;
    limiter.check_key(&5_000).unwrap();
    assert!(limiter.len() >= 1_000);
    // Every key refilled: the next check prunes them.
    advance(Duration::from_secs(1)).await;
    limiter.check_key(&5_001).unwrap();
    assert_eq!(limiter.len(), 1, "only the key just used is left");
}

#[tokio::test(start_paused = true)]
async fn keyed_memory_follows_recent_keys_only() {
    // A new user every 10 ms for 20 s: 2,000 keys in all, but only those of
    // the last few refill times are held.
    let limiter = KeyedRateLimiter::new(Rate::per_second(5));
    let mut most = 0;
    for user in 0..2_000_u32 {
        limiter.check_key(&user).unwrap();
        most = most.max(limiter.len());
        advance(10 * MS).await;
    }
    assert!(most <= 70, "held up to {most} keys");
}

#[test]
#[should_panic(expected = "`Rate::per_second(n)`: `n` must be at least 1, got 0")]
fn zero_per_second_panics_naming_the_argument() {
    let _ = Rate::per_second(0);
}

#[test]
#[should_panic(expected = "`Rate::per_minute(n)`: `n` must be at least 1, got 0")]
fn zero_per_minute_panics_naming_the_argument() {
    let _ = Rate::per_minute(0);
}

#[test]
#[should_panic(expected = "`Rate::every(interval)`: `interval` must be longer than zero")]
fn zero_interval_panics_naming_the_argument() {
    let _ = Rate::every(Duration::ZERO);
}

#[test]
#[should_panic(expected = "`Rate::burst(b)`: `b` must be at least 1, got 0")]
fn zero_burst_panics_naming_the_argument() {
    let _ = Rate::per_second(1).burst(0);
}

#[test]
fn try_constructors_return_errors_instead() {
    let errors: Vec<InvalidRate> = vec![
        Rate::try_per_second(0).unwrap_err(),
        Rate::try_per_minute(0).unwrap_err(),
        Rate::try_every(Duration::ZERO).unwrap_err(),
        Rate::per_second(1).try_burst(0).unwrap_err(),
    ];
    for (err, arg) in errors.iter().zip(["`n`", "`n`", "`interval`", "`b`"]) {
        assert!(err.to_string().contains(arg), "{err}");
    }
    assert!(Rate::try_per_second(3).is_ok());
}

#[test]
fn huge_rates_are_one_permit_per_nanosecond() {
    let rate = Rate::per_second(u32::MAX);
    assert_eq!(rate.interval(), Duration::from_nanos(1));
}
