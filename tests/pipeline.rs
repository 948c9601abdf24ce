//! `Pipeline`: stats that add up, retry timing on paused time, stop cancelling
//! upstream and downstream, skip counts, panics, cancellation and closing.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use proptest::prelude::*;
use tokio::time::{Instant, timeout};
use tokio_conc::pipeline::{BoxError, Outcome, StageStats};
use tokio_conc::prelude::*;

/// Long enough that only a hang reaches it.
const LONG: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    timeout(LONG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Waits until no more than `before` tasks are alive: a dropped pool's
/// aborted workers drop what they held as they end.
async fn tasks_settle(before: usize) {
    within("tasks to end", async {
        while tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > before
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

fn assert_adds_up(stage: &StageStats) {
    assert_eq!(stage.in_flight, 0, "{stage:?}");
    assert_eq!(stage.running, 0, "{stage:?}");
    assert_eq!(
        stage.items_in,
        stage.items_out + stage.errors + stage.dropped,
        "{stage:?}"
    );
    assert!(stage.skipped <= stage.errors, "{stage:?}");
    // Each item is tried at most once before its retries, and every item
    // that ended as out or error was tried.
    let first_tries = stage.attempts - stage.retries;
    assert!(first_tries <= stage.items_in, "{stage:?}");
    assert!(first_tries >= stage.items_out + stage.errors, "{stage:?}");
}

#[derive(Clone, Copy, Debug)]
struct StageSpec {
    workers: usize,
    unordered: bool,
    skip: bool,
    /// Items whose value (plus the stage's index) is divisible by this fail
    /// in this stage for good; those one above fail `retries` times, then
    /// succeed on their last attempt.
    fail_every: u32,
    /// Retries per item (0: no retry policy).
    retries: u32,
}

fn stage_spec() -> impl Strategy<Value = StageSpec> {
    (
        1..4_usize,
        any::<bool>(),
        any::<bool>(),
        2..40_u32,
        0..3_u32,
    )
        .prop_map(
            |(workers, unordered, skip, fail_every, retries)| StageSpec {
                workers,
                unordered,
                skip,
                fail_every,
                retries,
            },
        )
}

fn stage_of(spec: StageSpec, name: &'static str) -> Stage {
    let mut stage = Stage::new(name).workers(spec.workers);
    if spec.unordered {
        stage = stage.unordered();
    }
    if spec.skip {
        stage = stage.skip_errors();
    }
    stage
}

fn step(
    spec: StageSpec,
    salt: u32,
) -> impl Fn(u32) -> futures::future::BoxFuture<'static, Result<u32, BoxError>> + Send + Sync + 'static
{
    let tries = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<u32, u32>::new(),
    ));
    move |n: u32| {
        let earlier = {
            let mut tries = tries.lock().unwrap();
            let count = tries.entry(n).or_default();
            *count += 1;
            *count - 1
        };
        async move {
            if (n + salt) % 7 == 0 {
                tokio::task::yield_now().await; // some calls finish later than others
            }
            let residue = (n + salt) % spec.fail_every;
            if residue == 0 || (residue == 1 && earlier < spec.retries) {
                Err(format!("{n} failed").into())
            } else {
                Ok(n)
            }
        }
        .boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Per stage, every item taken in ends as out, error or dropped; what a
    /// stage hands on is what the next takes in; the output is what the
    /// policies say it is.
    #[test]
    fn stats_add_up(
        items in 0..300_u32,
        specs in proptest::collection::vec(stage_spec(), 1..4),
        take in proptest::option::of(0..300_usize),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            const NAMES: [&str; 3] = ["first", "second", "third"];
            let mut pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(0..items))
                .stage("source", |n| async move { Ok(n) });
            for (i, spec) in specs.iter().enumerate() {
                let stage = stage_of(*spec, NAMES[i]);
                let f = step(*spec, i as u32);
                pipeline = if spec.retries > 0 {
                    let retry = Retry::exponential(Duration::ZERO).max_attempts(spec.retries + 1);
                    pipeline.stage(stage.retry(retry), f)
                } else {
                    pipeline.stage(stage, f)
                };
            }
            let stats = pipeline.stats();
            let out: Vec<Result<u32, BoxError>> = match take {
                // The consumer may also walk away early.
                Some(k) => within("pipeline", pipeline.take(k).collect()).await,
                None => within("pipeline", pipeline.collect()).await,
            };
            tasks_settle(0).await;
            let report = stats.report();
            let stages = &report.stages;
            for stage in stages {
                assert_adds_up(stage);
            }
            for pair in stages.windows(2) {
                assert_eq!(pair[0].items_out, pair[1].items_in, "{pair:?}");
            }
            let last = stages.last().unwrap();
            let oks = out.iter().filter(|r| r.is_ok()).count() as u64;
            let errs = out.iter().filter(|r| r.is_err()).count();
            assert!(errs <= 1, "at most one error, at the end");
            if errs == 1 {
                assert!(out.last().unwrap().is_err());
            }
            if take.is_none() {
                assert_eq!(oks, last.items_out, "every item out of the last stage reached the consumer");
                let stopped = stages.iter().any(|s| s.errors > s.skipped);
                assert_eq!(errs == 1, stopped, "{report}");
                if !stopped {
                    assert_eq!(report.outcome, Outcome::Completed);
                    assert!(stages.iter().all(|s| s.dropped == 0), "{report}");
                    // Only the policies removed items, and each stage retried
                    // exactly the items that failed in it.
                    let mut entering: Vec<u32> = (0..items).collect();
                    for (i, spec) in specs.iter().enumerate() {
                        let residue = |n: &u32| (n + i as u32) % spec.fail_every;
                        let failing = entering.iter().filter(|n| residue(n) <= 1).count() as u64;
                        assert_eq!(stages[i + 1].retries, failing * u64::from(spec.retries), "{report}");
                        entering.retain(|n| residue(n) != 0);
                    }
                    assert_eq!(last.items_out, entering.len() as u64);
                } else {
                    assert!(matches!(report.outcome, Outcome::Failed { .. }), "{report}");
                }
            }
        });
    }
}

#[tokio::test(start_paused = true)]
async fn retry_waits_grow_exponentially_up_to_the_cap_on_paused_time() {
    let calls_at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let log = calls_at.clone();
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter([1_u32])).stage(
        Stage::new("flaky")
            .retry(
                Retry::exponential(Duration::from_millis(100))
                    .max_attempts(5)
                    .max_delay(Duration::from_millis(300)),
            )
            .skip_errors(),
        move |n| {
            log.lock().unwrap().push(start.elapsed());
            async move { Err(format!("attempt on {n} failed").into()) }
        },
    );
    let stats = pipeline.stats();
    let out: Vec<u32> = within("retrying pipeline", pipeline.try_collect())
        .await
        .unwrap();
    assert!(out.is_empty());
    let ms = |n| Duration::from_millis(n);
    // Waits: 100, 200, then capped at 300, 300.
    assert_eq!(
        *calls_at.lock().unwrap(),
        [ms(0), ms(100), ms(300), ms(600), ms(900)]
    );
    let flaky = stats.stage("flaky").unwrap();
    assert_eq!((flaky.attempts, flaky.retries), (5, 4));
    assert_eq!((flaky.errors, flaky.skipped, flaky.items_out), (1, 1, 0));
    assert_eq!(flaky.last_error.as_deref(), Some("attempt on 1 failed"));
    assert_eq!(
        flaky.busy,
        Duration::ZERO,
        "backoff sleeps are not busy time"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_that_succeeds_hands_the_item_on_and_seeded_jitter_repeats() {
    async fn run_once(seed: u64) -> (Vec<Duration>, StageStats) {
        let calls = Arc::new(AtomicUsize::new(0));
        let at = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (calls2, at2) = (calls.clone(), at.clone());
        let start = Instant::now();
        let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter([7_u32]))
            .stage(
                Stage::new("jittery").retry(
                    Retry::exponential(Duration::from_millis(1000))
                        .max_attempts(4)
                        .jitter(0.5)
                        .seed(seed),
                ),
                move |n| {
                    at2.lock().unwrap().push(start.elapsed());
                    let call = calls2.fetch_add(1, SeqCst);
                    async move {
                        if call < 3 {
                            Err("not yet".into())
                        } else {
                            Ok(n)
                        }
                    }
                },
            );
        let stats = pipeline.stats();
        let out: Vec<u32> = within("jittered retries", pipeline.try_collect())
            .await
            .unwrap();
        assert_eq!(out, [7]);
        let times = at.lock().unwrap().clone();
        (times, stats.stage("jittery").unwrap())
    }
    let (times, stage) = run_once(42).await;
    assert_eq!(
        (stage.attempts, stage.retries, stage.items_out, stage.errors),
        (4, 3, 1, 0)
    );
    assert_eq!(stage.last_error.as_deref(), Some("not yet"));
    let waits: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, wait) in waits.iter().enumerate() {
        let base = Duration::from_millis(1000 << n);
        assert!(
            *wait <= base && *wait >= base / 2,
            "wait {n}: {wait:?} of {base:?}"
        );
    }
    let (again, _) = run_once(42).await;
    assert_eq!(times, again, "the same seed draws the same jitter");
}

/// Counts calls running and calls dropped half-way.
#[derive(Default)]
struct Calls {
    started: AtomicUsize,
    live: AtomicUsize,
    dropped: AtomicUsize,
}

struct LiveCall(Arc<Calls>, bool);

impl LiveCall {
    fn new(calls: &Arc<Calls>) -> Self {
        calls.started.fetch_add(1, SeqCst);
        calls.live.fetch_add(1, SeqCst);
        LiveCall(calls.clone(), false)
    }
    fn finish(mut self) {
        self.1 = true;
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_upstream_and_downstream() {
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let pulled = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(Calls::default());
    let down = Arc::new(Calls::default());
    let counter = pulled.clone();
    let source = futures::stream::iter(0..1_000_000_u32).inspect(move |_| {
        counter.fetch_add(1, SeqCst);
    });
    let (up2, down2) = (up.clone(), down.clone());
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(source)
        .stage(Stage::new("upstream").workers(4).unordered(), move |n| {
            let call = LiveCall::new(&up2);
            async move {
                // Slow enough that the failure lands while these run.
                tokio::time::sleep(Duration::from_millis(if n < 20 { 1 } else { 60_000 })).await;
                call.finish();
                Ok(n)
            }
        })
        .stage(Stage::new("check").workers(2).unordered(), |n| async move {
            if n == 10 {
                Err("item 10 is bad".into())
            } else {
                Ok(n)
            }
        })
        .stage(Stage::new("downstream").workers(3).unordered(), move |n| {
            let call = LiveCall::new(&down2);
            async move {
                // Never finishes on its own: only the stop can end it.
                std::future::pending::<()>().await;
                call.finish();
                Ok(n)
            }
        });
    let stats = pipeline.stats();
    let out: Vec<Result<u32, BoxError>> = within("stopped pipeline", pipeline.collect()).await;

    assert_eq!(out.len(), 1, "nothing got through the never-ending stage");
    assert_eq!(out[0].as_ref().unwrap_err().to_string(), "item 10 is bad");
    let report = stats.report();
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            stage: "check".into(),
            error: "item 10 is bad".into()
        }
    );
    // Upstream stopped: the source was not read to its end, and the slow calls
    // were dropped half-way.
    assert!(
        pulled.load(SeqCst) < 2_000,
        "source read on: {}",
        pulled.load(SeqCst)
    );
    assert_eq!(up.live.load(SeqCst), 0);
    assert!(up.dropped.load(SeqCst) > 0);
    // Downstream stopped: its calls were running and were dropped.
    assert!(down.started.load(SeqCst) > 0);
    assert_eq!(down.live.load(SeqCst), 0);
    assert_eq!(down.dropped.load(SeqCst), down.started.load(SeqCst));
    for stage in &report.stages {
        assert_eq!(stage.in_flight, 0, "{report}");
        assert_eq!(
            stage.items_in,
            stage.items_out + stage.errors + stage.dropped,
            "{report}"
        );
    }
    let check = &report.stages[1];
    assert_eq!(check.errors, 1);
    assert!(report.stages[2].dropped > 0);
    // No task left behind.
    tasks_settle(tasks_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_counts_and_goes_on() {
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(0..100_u32))
        .stage(
            Stage::new("thirds").workers(3).skip_errors(),
            |n| async move {
                if n % 3 == 0 {
                    Err(format!("{n} is a multiple of 3").into())
                } else {
                    Ok(n)
                }
            },
        )
        .stage("double", |n| async move { Ok(n * 2) });
    let stats = pipeline.stats();
    let out: Vec<u32> = within("skipping pipeline", pipeline.try_collect())
        .await
        .unwrap();
    let expected: Vec<u32> = (0..100).filter(|n| n % 3 != 0).map(|n| n * 2).collect();
    assert_eq!(
        out, expected,
        "ordered stages keep order around skipped items"
    );
    let report = stats.report();
    assert_eq!(report.outcome, Outcome::Completed);
    let thirds = &report.stages[0];
    assert_eq!((thirds.items_in, thirds.items_out), (100, 66));
    assert_eq!((thirds.errors, thirds.skipped, thirds.dropped), (34, 34, 0));
    assert!(
        thirds
            .last_error
            .as_deref()
            .unwrap()
            .ends_with("is a multiple of 3")
    );
    assert_eq!(report.stages[1].items_in, 66);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_stage_surfaces_in_the_consumer() {
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(0..50_u32)).stage(
        Stage::new("fragile").workers(2),
        |n| async move {
            if n == 17 {
                panic!("boom at {n}");
            }
            Ok(n)
        },
    );
    let stats = pipeline.stats();
    let joined = within(
        "panicking pipeline",
        tokio::spawn(pipeline.try_collect::<Vec<u32>>()),
    )
    .await;
    let panic = joined.expect_err("the panic is resumed").into_panic();
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    assert_eq!(message.as_deref(), Some("boom at 17"));
    assert_eq!(stats.report().outcome, Outcome::Panicked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_context_ends_with_its_error() {
    let ctx = TaskContext::background();
    let pipeline: Pipeline<u32, ContextError> = Pipeline::new(futures::stream::iter(0..u32::MAX))
        .context(&ctx)
        .stage(Stage::new("slow").workers(2), |n| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(n)
        });
    let stats = pipeline.stats();
    let mut pipeline = Box::pin(pipeline);
    let mut got = 0;
    while let Some(item) = within("cancelled pipeline", pipeline.next()).await {
        match item {
            Ok(_) => {
                got += 1;
                if got == 5 {
                    ctx.cancel();
                }
            }
            Err(e) => {
                assert_eq!(e, ContextError::Cancelled);
                break;
            }
        }
    }
    assert!(pipeline.next().await.is_none(), "nothing after the error");
    assert!(!ctx.is_cancelled() || got >= 5);
    let report = stats.report();
    assert_eq!(report.outcome, Outcome::Stopped(ContextError::Cancelled));
    assert_eq!(report.stages[0].in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ambient_context_is_the_parent() {
    let ctx = TaskContext::background();
    ctx.cancel();
    let out: Vec<Result<u32, ContextError>> = ctx
        .scope(async {
            Pipeline::new(futures::stream::iter(0..10_u32))
                .stage("id", |n| async move { Ok(n) })
                .collect()
                .await
        })
        .await;
    assert_eq!(out, [Err(ContextError::Cancelled)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_source_drains_every_stage() {
    // A source that ends on a signal, as a shutdown's `close_on` will: what
    // was read before the signal goes through every stage.
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let source = futures::stream::iter(0..u32::MAX)
        .then(|n| async move {
            tokio::time::sleep(Duration::from_micros(200)).await;
            n
        })
        .take_until(closed);
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(source)
        .stage(Stage::new("a").workers(3).unordered(), |n| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(n)
        })
        .stage(Stage::new("b").workers(2), |n| async move { Ok(n + 1) });
    let stats = pipeline.stats();
    let consumer = tokio::spawn(pipeline.try_collect::<Vec<u32>>());
    tokio::time::sleep(Duration::from_millis(30)).await;
    close.send(()).unwrap();
    let out = within("draining pipeline", consumer)
        .await
        .unwrap()
        .unwrap();
    let report = stats.report();
    assert_eq!(report.outcome, Outcome::Completed);
    let a = &report.stages[0];
    assert!(a.items_in > 0);
    assert_eq!(a.items_in, a.items_out, "{report}");
    assert_eq!(report.stages[1].items_out, a.items_in);
    assert_eq!(out.len() as u64, a.items_in);
    let distinct: HashSet<u32> = out.iter().copied().collect();
    assert_eq!(distinct.len(), out.len());
}

#[tokio::test(start_paused = true)]
async fn busy_and_blocked_time_on_paused_time() {
    let pipeline: Pipeline<u32, BoxError> =
        Pipeline::new(futures::stream::iter(0..5_u32)).stage(Stage::new("work"), |n| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(n)
        });
    let stats = pipeline.stats();
    let mut pipeline = Box::pin(pipeline);
    let mut n = 0;
    while let Some(item) = within("slow consumer", pipeline.next()).await {
        item.unwrap();
        n += 1;
        // The consumer is the bottleneck: 200 ms per item against 50.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(n, 5);
    let work = stats.stage("work").unwrap();
    assert_eq!(work.busy, Duration::from_millis(250));
    // One worker finishes the items at 50, 100, 150, 200 and 250 ms; the
    // consumer takes them at 50, 250, 450, 650 and 850 ms. Blocked: from the
    // later of "finished" and "last taken" to "taken" — 150 ms for the
    // second item, the consumer's whole 200 ms for each of the last three.
    assert_eq!(work.blocked, Duration::from_millis(750));
}

#[tokio::test(start_paused = true)]
async fn a_fast_consumer_never_blocks_a_stage() {
    let pipeline: Pipeline<u32, BoxError> =
        Pipeline::new(futures::stream::iter(0..5_u32)).stage("work", |n| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(n)
        });
    let stats = pipeline.stats();
    let out: Vec<u32> = within("fast consumer", pipeline.try_collect())
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    let work = stats.stage("work").unwrap();
    assert_eq!(work.blocked, Duration::ZERO);
    assert_eq!(work.busy, Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_live_while_it_runs() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let open = gate.clone();
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(0..10_u32)).stage(
        Stage::new("gated").workers(3).buffer(2),
        move |n| {
            let gate = open.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok(n)
            }
        },
    );
    let stats = pipeline.stats();
    assert_eq!(stats.report().outcome, Outcome::Running);
    let consumer = tokio::spawn(pipeline.try_collect::<Vec<u32>>());
    within("three calls to start", async {
        while stats.stage("gated").unwrap().running < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let live = stats.stage("gated").unwrap();
    assert_eq!(live.running, 3);
    assert_eq!(live.items_out, 0);
    assert!(live.in_flight >= 3 && live.in_flight <= 5, "{live:?}");
    assert_eq!(live.items_in, live.in_flight);
    gate.add_permits(10);
    let out = within("gated pipeline", consumer).await.unwrap().unwrap();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    let done = stats.stage("gated").unwrap();
    assert_eq!(
        (done.items_in, done.items_out, done.in_flight, done.running),
        (10, 10, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pipeline_counts_what_it_held_as_dropped() {
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(0..100_u32)).stage(
        Stage::new("forever").workers(4),
        |n| async move {
            std::future::pending::<()>().await;
            Ok(n)
        },
    );
    let stats = pipeline.stats();
    let mut pipeline = Box::pin(pipeline);
    assert!(
        timeout(Duration::from_millis(20), pipeline.next())
            .await
            .is_err(),
        "nothing finishes"
    );
    drop(pipeline);
    assert_eq!(stats.report().outcome, Outcome::Abandoned);
    tasks_settle(tasks_before).await;
    let report = stats.report();
    let forever = &report.stages[0];
    assert!(forever.items_in > 0);
    assert_eq!(forever.dropped, forever.items_in, "{report}");
    assert_eq!(forever.in_flight, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_inserts_any_operator_and_the_report_prints_a_table() {
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(1..=20_u32))
        .stage(Stage::new("parse").workers(2), |n| async move { Ok(n) })
        .through(|s| s.map(|n| n * 10))
        .stage(Stage::new("store").workers(2).unordered(), |n| async move {
            Ok(n)
        });
    let report = within("pipeline", pipeline.run()).await.unwrap();
    let table = report.to_string();
    assert!(table.starts_with("pipeline completed after"), "{table}");
    assert!(
        table.contains("parse") && table.contains("store"),
        "{table}"
    );
    assert_eq!(report.stages[1].items_out, 20);
    assert_eq!(report.stages[1].items_in, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_drains_the_pipeline_then_reports() {
    let shutdown = Shutdown::new();
    let source = futures::stream::iter(0..u32::MAX)
        .then(|n| async move {
            tokio::time::sleep(Duration::from_micros(200)).await;
            n
        })
        .close_on(&shutdown);
    let pipeline: Pipeline<u32, BoxError> = Pipeline::new(source)
        .context(shutdown.context())
        .stage(
            Stage::new("handle").workers(4).unordered(),
            |n| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(n)
            },
        )
        .stage("store", |n| async move { Ok(n) });
    let stats = pipeline.stats();
    let run = shutdown.spawn("pipeline", pipeline.run());
    tokio::time::sleep(Duration::from_millis(30)).await;
    shutdown.trigger();
    let report = within("shutdown", shutdown.wait(Duration::from_secs(10))).await;
    assert!(report.is_clean(), "{report}");
    let pipeline_report = run.await.unwrap().unwrap();
    assert_eq!(pipeline_report.outcome, Outcome::Completed);
    let handle = &pipeline_report.stages[0];
    assert!(handle.items_in > 0);
    assert_eq!(handle.items_in, handle.items_out, "{pipeline_report}");
    assert_eq!(pipeline_report.stages[1].items_out, handle.items_in);
    assert_eq!(stats.report(), pipeline_report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_past_its_grace_stops_the_pipeline_with_the_context_error() {
    let shutdown = Shutdown::new();
    let pipeline: Pipeline<u32, ContextError> = Pipeline::new(futures::stream::iter(0..u32::MAX))
        .context(shutdown.context())
        .stage(Stage::new("stuck").workers(2), |n| async move {
            std::future::pending::<()>().await; // never finishes its items
            Ok(n)
        });
    let stats = pipeline.stats();
    let run = shutdown.spawn("pipeline", pipeline.run());
    tokio::time::sleep(Duration::from_millis(10)).await;
    shutdown.trigger();
    let report = within("shutdown", shutdown.wait(Duration::from_millis(50))).await;
    assert_eq!(report.aborted(), ["pipeline"], "{report}");
    // Cancelled at the abort phase, the pipeline ends on its own with the
    // context's error (or, if it was too slow to react, it was aborted).
    match run.await {
        Ok(result) => assert_eq!(result.unwrap_err(), ContextError::Cancelled),
        Err(aborted) => assert!(aborted.is_cancelled()),
    }
    tasks_settle(0).await;
    let stuck = stats.stage("stuck").unwrap();
    assert!(stuck.items_in > 0);
    assert_eq!(stuck.dropped, stuck.items_in, "{stuck:?}");
    assert_eq!(stuck.in_flight, 0);
}
