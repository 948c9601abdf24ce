//! Soak: every operator carrying millions of items, stopped and restarted
//! over and over, for a bounded time. Ignored by default; run it with
//!
//! ```text
//! cargo test --release --test soak -- --ignored soak
//! ```
//!
//! `SOAK_SECS` (default 60) sets how long it runs. Each round builds one
//! pipeline through every operator — `generate_ahead`, `close_on`,
//! `rate_limit`, `fan_out`, `broadcast`, `partition`, `fan_in`, `par_map`,
//! `par_map_unordered`, `par_map_keyed`, `try_par_map`, `prefetch`, a
//! two-stage `Pipeline` (one stage skipping the items it fails on), a `Topic`
//! with a Backpressure and a DropOldest subscription, `generate` — bound to
//! a fresh context, takes a random number of items, then stops it one of
//! three ways (cancel the context, drop the output, trigger the shutdown).
//! While a round runs, the live tasks stay under a fixed bound; after each
//! round every spawned task must have ended; after a warm-up, the resident
//! set must stay within a bound of where it was (read from
//! `/proc/self/statm`, on Linux).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_conc::pipeline::BoxError;
use tokio_conc::prelude::*;

/// How much the resident set may grow past its post-warm-up level.
const RSS_SLACK: u64 = 64 << 20;
/// How many tasks may be alive at once while a round runs: the pools'
/// workers, the prefetch and branch tasks, the topic's publisher — a fixed
/// number, whatever the number of items.
const TASK_BOUND: usize = 128;

/// The resident set in bytes, where the platform tells (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Cancel,
    DropOutput,
    Shutdown,
}

fn pipeline(
    ctx: &TaskContext,
    shutdown: &Shutdown,
    made: Arc<AtomicU64>,
) -> BoxStream<'static, u64> {
    let shutdown = shutdown.clone();
    let source = generate_ahead(64, move |y| async move {
        let mut n = 0_u64;
        loop {
            made.fetch_add(1, Ordering::Relaxed);
            y.send(n).await?;
            n += 1;
        }
    })
    .context(ctx)
    .close_on(&shutdown)
    .rate_limit(Rate::per_second(50_000_000).burst(100_000));
    let fanned = fan_in(source.fan_out(2).into_iter().map(StreamExt::boxed));
    let broadcast = fan_in(
        fanned
            .broadcast(2, 32)
            .into_iter()
            .map(|b| b.filter(|x| futures::future::ready(x % 2 == 0)).boxed()),
    );
    let lanes = fan_in(
        broadcast
            .partition(3, |x: &u64| *x % 5)
            .into_iter()
            .map(StreamExt::boxed),
    );
    let mapped = lanes
        .par_map(Workers::new(4).context(ctx), |x| async move { x + 1 })
        .par_map_unordered(Workers::new(4).context(ctx), |x| async move { x })
        .par_map_keyed(
            Workers::new(4).context(ctx),
            |x: &u64| *x % 7,
            |x| async move { x },
        )
        .map(Ok::<u64, ContextError>)
        .try_par_map(Workers::new(2).context(ctx), |x| async move {
            Ok::<u64, ContextError>(x)
        })
        .filter_map(|r| futures::future::ready(r.ok()))
        .prefetch(32)
        .context(ctx);
    // A pipeline of two stages, the first skipping the items it fails on.
    let staged = Pipeline::new(mapped)
        .context(ctx)
        .stage(
            Stage::new("check").workers(4).unordered().skip_errors(),
            |x: u64| async move {
                if x % 1_000 == 999 {
                    Err(BoxError::from("every thousandth"))
                } else {
                    Ok(x)
                }
            },
        )
        .stage(Stage::new("pass").workers(2), |x: u64| async move {
            Ok::<_, BoxError>(x)
        })
        .filter_map(|r| futures::future::ready(r.ok()));
    let published = topic(ctx, staged.boxed());
    // A lazy generator re-yielding the pipeline's items: the last stage.
    generate(move |y| async move {
        let mut mapped = published;
        while let Some(x) = mapped.next().await {
            y.send(x).await?;
        }
        Ok(())
    })
    .context(ctx)
    .boxed()
}

/// A task publishes `s` into a topic bound to `ctx` with a Backpressure and
/// a DropOldest subscription, merged with `fan_in`; dropping the output
/// aborts the publisher.
fn topic(ctx: &TaskContext, s: BoxStream<'static, u64>) -> BoxStream<'static, u64> {
    let topic = Topic::new(16).context(ctx);
    let subscriptions = [
        topic.subscribe().boxed(),
        topic.subscribe_with(SlowSubscriber::DropOldest).boxed(),
    ];
    let publisher = tokio::spawn(async move {
        let mut s = s;
        while let Some(x) = s.next().await {
            if topic.publish(x).await.is_err() || topic.subscriber_count() == 0 {
                return;
            }
        }
    });
    let abort = publisher.abort_handle();
    let guard = AbortOnDrop(abort);
    fan_in(subscriptions)
        .map(move |x| {
            let _ = &guard;
            x
        })
        .boxed()
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[test]
#[ignore = "soak: minutes long; run with `cargo test --release --test soak -- --ignored soak`"]
fn soak_every_operator_under_cancel_and_restart() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .map(|v| v.parse().expect("SOAK_SECS must be a number"))
        .unwrap_or(60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let warm_up = Instant::now() + Duration::from_secs(secs / 4);
    let mut baseline: Option<u64> = None;
    let mut peak = 0_u64;
    let mut peak_tasks = 0_usize;
    let (mut rounds, mut consumed) = (0_u64, 0_u64);
    let made = Arc::new(AtomicU64::new(0));
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    while Instant::now() < deadline {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let take = 10_000 + seed % 300_000;
        let stop = [Stop::Cancel, Stop::DropOutput, Stop::Shutdown][(seed % 3) as usize];
        runtime.block_on(async {
            let ctx = TaskContext::background();
            let shutdown = Shutdown::new();
            let mut out = pipeline(&ctx, &shutdown, made.clone());
            let mut got = 0_u64;
            let metrics = tokio::runtime::Handle::current().metrics();
            let run = async {
                while got < take {
                    match out.next().await {
                        Some(_) => got += 1,
                        None => break,
                    }
                    if got % 1_024 == 0 {
                        let tasks = metrics.num_alive_tasks();
                        peak_tasks = peak_tasks.max(tasks);
                        assert!(
                            tasks <= TASK_BOUND,
                            "round {rounds}: {tasks} tasks alive, more than {TASK_BOUND}"
                        );
                    }
                }
                match stop {
                    Stop::Cancel => {
                        ctx.cancel();
                        while out.next().await.is_some() {}
                    }
                    Stop::DropOutput => drop(out),
                    Stop::Shutdown => {
                        shutdown.trigger();
                        while out.next().await.is_some() {}
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .unwrap_or_else(|_| panic!("round {rounds} ({stop:?} after {take}) hung"));
            consumed += got;
            let settled = Instant::now();
            while metrics.num_alive_tasks() > 0 {
                assert!(
                    settled.elapsed() < Duration::from_secs(10),
                    "round {rounds} ({stop:?}): {} task(s) still alive",
                    metrics.num_alive_tasks()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        rounds += 1;
        if let Some(now) = rss() {
            if Instant::now() >= warm_up {
                let base = *baseline.get_or_insert(now);
                peak = peak.max(now);
                assert!(
                    now <= base + RSS_SLACK,
                    "round {rounds}: resident set {} MiB, {} MiB after the warm-up",
                    now >> 20,
                    base >> 20
                );
            }
        }
    }
    eprintln!(
        "soak: {rounds} rounds, {consumed} items out, {} made, resident set {} MiB after warm-up, peak {} MiB, at most {peak_tasks} tasks alive",
        made.load(Ordering::Relaxed),
        baseline.unwrap_or(0) >> 20,
        peak >> 20
    );
    assert!(rounds > 1, "the soak ran one round only");
}
