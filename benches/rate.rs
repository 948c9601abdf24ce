//! Rate limiting: what a permit costs when the limiter never blocks, against
//! calling governor directly (its default quanta clock) and against
//! `tokio_stream::StreamExt::throttle`; then, without criterion, how accurate
//! a 1000/s limit is on the real clock.
//!
//! `cargo bench --bench rate`: the criterion groups, then the accuracy table.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use futures::{StreamExt, stream};
use governor::clock::{Clock, MonotonicClock, QuantaClock};
use governor::prelude::StreamRateLimitExt;
use governor::{Quota, RateLimiter as Governor};
use tokio::time::Instant;
use tokio_conc::prelude::*;
use tokio_conc::rate::TokioClock;

/// Permits per measured iteration.
const PERMITS: u64 = 10_000;

/// A rate no benchmark can reach: one permit per nanosecond, a burst of a
/// thousand. Every check passes.
fn unreachable_rate() -> Rate {
    Rate::per_second(u32::MAX).burst(1_000)
}

fn unreachable_quota() -> Quota {
    Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::new(1_000).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// One permit, checked by hand: governor with its default (quanta) clock,
/// governor on `TokioClock`, and `tokio_conc::rate::RateLimiter::check`.
fn check(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("rate/check (never blocks)");
    group.throughput(Throughput::Elements(PERMITS));

    let governor = Governor::direct(unreachable_quota());
    group.bench_function("governor direct check, quanta clock (baseline)", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(governor.check()).unwrap();
            }
        })
    });

    let on_std = Governor::direct_with_clock(unreachable_quota(), MonotonicClock);
    group.bench_function(
        "governor direct check, std clock (its default without quanta)",
        |b| {
            b.iter(|| {
                for _ in 0..PERMITS {
                    black_box(on_std.check()).unwrap();
                }
            })
        },
    );

    let on_tokio = Governor::direct_with_clock(unreachable_quota(), TokioClock);
    group.bench_function("governor direct check, TokioClock", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(on_tokio.check()).unwrap();
            }
        })
    });

    let ours = RateLimiter::new(unreachable_rate());
    group.bench_function("tokio_conc RateLimiter::check", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(ours.check()).unwrap();
            }
        })
    });

    let ctx = TaskContext::background();
    let with_ctx = RateLimiter::new(unreachable_rate()).context(&ctx);
    group.bench_function("tokio_conc RateLimiter::check, with context", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(with_ctx.check()).unwrap();
            }
        })
    });
    group.finish();
}

/// A stream of `PERMITS` items through each limiter, on a current-thread
/// runtime.
fn streams(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate/stream (never blocks)");
    group.throughput(Throughput::Elements(PERMITS));
    let items = || stream::iter(0..PERMITS);

    group.bench_function("no limit (floor)", |b| {
        b.to_async(&rt).iter(|| {
            items().for_each(|x| async move {
                black_box(x);
            })
        })
    });

    let governor = Governor::direct(unreachable_quota());
    group.bench_function("map + governor check, quanta clock (baseline)", |b| {
        b.to_async(&rt).iter(|| {
            items()
                .map(|x| {
                    black_box(governor.check()).unwrap();
                    x
                })
                .for_each(|x| async move {
                    black_box(x);
                })
        })
    });

    let on_std = Governor::direct_with_clock(unreachable_quota(), MonotonicClock);
    group.bench_function("map + governor check, std clock", |b| {
        b.to_async(&rt).iter(|| {
            items()
                .map(|x| {
                    black_box(on_std.check()).unwrap();
                    x
                })
                .for_each(|x| async move {
                    black_box(x);
                })
        })
    });

    let on_tokio = Governor::direct_with_clock(unreachable_quota(), TokioClock);
    group.bench_function(
        "map + governor check, TokioClock (same clock as rate_limit)",
        |b| {
            b.to_async(&rt).iter(|| {
                items()
                    .map(|x| {
                        black_box(on_tokio.check()).unwrap();
                        x
                    })
                    .for_each(|x| async move {
                        black_box(x);
                    })
            })
        },
    );

    group.bench_function("governor ratelimit_stream, quanta clock", |b| {
        b.to_async(&rt).iter(|| {
            items()
                .ratelimit_stream(&governor)
                .for_each(|x| async move {
                    black_box(x);
                })
        })
    });

    group.bench_function("tokio_conc rate_limit", |b| {
        b.to_async(&rt).iter(|| {
            items()
                .rate_limit(unreachable_rate())
                .for_each(|x| async move {
                    black_box(x);
                })
        })
    });

    let ctx = TaskContext::background();
    group.bench_function("tokio_conc rate_limit, with context", |b| {
        b.to_async(&rt).iter(|| {
            items()
                .rate_limit(unreachable_rate())
                .context(&ctx)
                .for_each(|x| async move {
                    black_box(x);
                })
        })
    });

    // `throttle` sleeps between items whatever the duration, so even 1 ns
    // costs a timer per item: shown for contrast, on fewer items.
    let few = PERMITS / 100;
    group.throughput(Throughput::Elements(few));
    group.bench_with_input(
        BenchmarkId::new("tokio_stream throttle(1 ns), contrast", few),
        &few,
        |b, &few| {
            b.to_async(&rt).iter(|| {
                tokio_stream::StreamExt::throttle(stream::iter(0..few), Duration::from_nanos(1))
                    .for_each(|x| async move {
                        black_box(x);
                    })
            })
        },
    );
    group.finish();
}

/// What one reading of each clock costs: the floor under every check.
fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate/clock read");
    group.throughput(Throughput::Elements(PERMITS));
    group.bench_function("governor QuantaClock (TSC)", |b| {
        let clock = QuantaClock::default();
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(clock.now());
            }
        })
    });
    group.bench_function("governor MonotonicClock (std Instant)", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(MonotonicClock.now());
            }
        })
    });
    group.bench_function("tokio_conc TokioClock (tokio Instant)", |b| {
        b.iter(|| {
            for _ in 0..PERMITS {
                black_box(TokioClock.now());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = clocks, check, streams
}

/// Gaps between consecutive instants: the achieved rate and their spread.
struct Accuracy {
    items: usize,
    rate: f64,
    mean: Duration,
    stddev: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Accuracy {
    fn of(at: &[Instant]) -> Accuracy {
        let mut gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let span = at[at.len() - 1] - at[0];
        let mean_s = span.as_secs_f64() / gaps.len() as f64;
        let var = gaps
            .iter()
            .map(|g| (g.as_secs_f64() - mean_s).powi(2))
            .sum::<f64>()
            / gaps.len() as f64;
        gaps.sort_unstable();
        let pick = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
        Accuracy {
            items: at.len(),
            rate: gaps.len() as f64 / span.as_secs_f64(),
            mean: Duration::from_secs_f64(mean_s),
            stddev: Duration::from_secs_f64(var.sqrt()),
            p50: pick(0.5),
            p99: pick(0.99),
            max: gaps[gaps.len() - 1],
        }
    }
}

/// Asks for 1000 items/s for 2 s on the real clock (a multi-thread runtime),
/// and prints what came out.
fn accuracy() {
    const ITEMS: usize = 2_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    /// Builds, inside the runtime, a run that stamps each item as it comes out.
    type Case = fn() -> Pin<Box<dyn Future<Output = Vec<Instant>>>>;
    let cases: Vec<(&str, Case)> = vec![
        ("rate_limit(Rate::per_second(1000))", || {
            Box::pin(
                stream::iter(0..ITEMS)
                    .rate_limit(Rate::per_second(1000))
                    .map(|_| Instant::now())
                    .collect(),
            )
        }),
        ("rate_limit(Rate::per_second(1000).burst(5))", || {
            Box::pin(
                stream::iter(0..ITEMS)
                    .rate_limit(Rate::per_second(1000).burst(5))
                    .map(|_| Instant::now())
                    .collect(),
            )
        }),
        ("tokio::time::interval(1 ms) (Go's time.Tick)", || {
            let ticks = tokio::time::interval(Duration::from_millis(1));
            Box::pin(
                tokio_stream::wrappers::IntervalStream::new(ticks)
                    .take(ITEMS)
                    .map(|_| Instant::now())
                    .collect(),
            )
        }),
        ("tokio_stream throttle(1 ms)", || {
            let items = stream::iter(0..ITEMS);
            Box::pin(
                tokio_stream::StreamExt::throttle(items, Duration::from_millis(1))
                    .map(|_| Instant::now())
                    .collect(),
            )
        }),
    ];
    println!();
    println!("rate/accuracy: asking for 1000 items/s, {ITEMS} items, real clock");
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "items/s", "mean gap", "stddev", "p50", "p99", "max"
    );
    for (name, case) in cases {
        let at = rt.block_on(async { case().await });
        let a = Accuracy::of(&at);
        assert_eq!(a.items, ITEMS);
        println!(
            "{:<46} {:>9.1} {:>9.3?} {:>9.3?} {:>9.3?} {:>9.3?} {:>9.3?}",
            name, a.rate, a.mean, a.stddev, a.p50, a.p99, a.max
        );
    }
}

fn main() {
    benches();
    criterion().final_summary();
    accuracy();
}
