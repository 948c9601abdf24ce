//! The contract's surface, called exactly as `DESIGN.md` writes it: every
//! call it names, with the argument shapes it shows, through the prelude
//! alone. A rename or a changed signature fails to compile here before it
//! reaches a user. Each test also checks the one-line meaning the contract
//! gives the call (the other test files prove the guarantees in depth).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use tokio_conc::prelude::*;

#[derive(Clone, Debug, PartialEq)]
struct SessionId(String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl SpanValue for SessionId {
    const FIELD: &'static str = "session_id";
}

#[derive(Debug, Clone, PartialEq)]
struct Order(u32);

#[derive(Debug, Clone, PartialEq)]
struct Receipt(u32);

async fn charge(order: Order) -> Order {
    Order(order.0 * 10)
}

async fn store(order: Order) -> Receipt {
    Receipt(order.0 + 1)
}

/// "Who uses it, and how": the opening example, word for word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_example_compiles_and_runs() {
    let ctx = TaskContext::background()
        .with_value(SessionId("42".into()))
        .with_timeout(Duration::from_secs(5));
    let orders = stream::iter((0..50).map(Order));

    let stored: Vec<Receipt> = orders
        .rate_limit(Rate::per_second(200).burst(20))
        .par_map_unordered(Workers::new(8).context(&ctx).name("charge"), charge)
        .par_map(4, store)
        .collect()
        .await;

    let mut got: Vec<u32> = stored.into_iter().map(|r| r.0).collect();
    got.sort_unstable();
    assert_eq!(got, (0..50).map(|i| i * 10 + 1).collect::<Vec<_>>());
}

/// "TaskContext": every row of the table.
#[tokio::test(start_paused = true)]
async fn task_context_table() {
    let root = TaskContext::background();
    let child = root.child();
    let timed = root.with_timeout(Duration::from_secs(1));
    let dated = root.with_deadline(tokio::time::Instant::now() + Duration::from_secs(2));
    assert!(timed.deadline().unwrap() < dated.deadline().unwrap());
    let valued = child.with_value(SessionId("7".into()));
    assert_eq!(valued.value::<SessionId>(), Some(&SessionId("7".into())));
    assert_eq!(valued.with_value(3_u8).value::<SessionId>().unwrap().0, "7");

    let token = timed.token();
    let start = tokio::time::Instant::now();
    token.cancelled().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the token fires at the deadline"
    );
    assert_eq!(timed.err(), Some(ContextError::DeadlineExceeded));

    let run: Result<u32, ContextError> = child.run(async { 5 }).await;
    assert_eq!(run, Ok(5));
    let seen = valued
        .scope(async { TaskContext::current().map(|c| c.value::<SessionId>().cloned()) })
        .await;
    assert_eq!(seen, Some(Some(SessionId("7".into()))));
    let spawned = valued.spawn(async { TaskContext::current().is_some() });
    assert!(spawned.await.unwrap());
    let _span: tracing::Span = valued.span();

    child.cancel();
    child.cancelled().await;
    assert!(child.is_cancelled() && valued.is_cancelled() && !root.is_cancelled());
    assert_eq!(valued.err(), Some(ContextError::Cancelled));
    let other = root.child();
    other.cancel_with(std::io::Error::other("gone"));
    assert!(matches!(other.err(), Some(ContextError::Cause(_))));
}

/// "Generator": both natural forms, `prefetch`, `generate_ahead`,
/// `try_generate`, and a context attached.
#[tokio::test]
async fn generator_forms() {
    let endless = generate(|y| async move {
        let mut i = 0;
        loop {
            y.send(i).await?;
            i += 1;
        }
    });
    assert_eq!(endless.take(3).collect::<Vec<u32>>().await, [0, 1, 2]);

    let finite = generate(|y| async move {
        for i in 0..3 {
            y.send(i).await?;
        }
        Ok(())
    });
    assert_eq!(finite.prefetch(2).collect::<Vec<u32>>().await, [0, 1, 2]);

    let ahead = generate_ahead(4, |y| async move {
        for i in 0..3 {
            y.send(i).await?;
        }
        Ok(())
    });
    assert_eq!(ahead.collect::<Vec<u32>>().await, [0, 1, 2]);

    let fallible = try_generate(|y| async move {
        y.send(1).await?;
        Err::<(), _>(ContextErrorOr::Parse)
    });
    let items: Vec<Result<u32, ContextErrorOr>> = fallible.collect().await;
    assert_eq!(items.len(), 2);
    assert!(items[1].is_err());

    let ctx = TaskContext::background();
    ctx.cancel();
    let bound = generate(|y: Yielder<u32>| async move {
        y.send(1).await?;
        Ok(())
    })
    .context(&ctx);
    assert_eq!(bound.collect::<Vec<u32>>().await, Vec::<u32>::new());
}

/// "Fan-in" and "Fan-out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_and_fan_out() {
    let mut merged = fan_in(vec![stream::iter(0..3), stream::iter(10..13)]);
    merged.push(stream::iter(20..21));
    let mut got: Vec<i32> = merged.collect().await;
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 10, 11, 12, 20]);

    let branches: Vec<_> = stream::iter(0..100).fan_out(3);
    let tasks: Vec<_> = branches
        .into_iter()
        .map(|b| tokio::spawn(b.collect::<Vec<i32>>()))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());

    let copies = stream::iter(0..5).broadcast(2, 2);
    let got = futures::future::join_all(copies.into_iter().map(|b| b.collect::<Vec<i32>>())).await;
    assert_eq!(got, [vec![0, 1, 2, 3, 4], vec![0, 1, 2, 3, 4]]);

    let lanes = stream::iter(0..20).partition(4, |x: &i32| x % 3);
    let got = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<i32>>())).await;
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 20);
}

/// "Worker pool": the stream operators, `Workers`, `WorkerPool`, `TaskGroup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pool_forms() {
    let ordered: Vec<u32> = stream::iter(0..20_u32)
        .par_map(4, |x| async move { x * 2 })
        .collect()
        .await;
    assert_eq!(ordered, (0..20).map(|x| x * 2).collect::<Vec<_>>());

    let ctx = TaskContext::background();
    let workers = Workers::new(3).context(&ctx).buffer(8).name("stage");
    let mut unordered: Vec<u32> = stream::iter(0..20_u32)
        .par_map_unordered(workers, |x| async move { x + 1 })
        .collect()
        .await;
    unordered.sort_unstable();
    assert_eq!(unordered, (1..21).collect::<Vec<_>>());

    let sum = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let s = sum.clone();
    stream::iter(0..10_u32)
        .par_for_each(2, move |x| {
            let s = s.clone();
            async move {
                s.fetch_add(x, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .await;
    assert_eq!(sum.load(std::sync::atomic::Ordering::SeqCst), 45);

    // `try_` chains (One surface).
    let parsed: Result<Vec<u32>, ContextErrorOr> = stream::iter(["1", "2", "3"])
        .map(Ok)
        .try_par_map(4, |s: &str| async move {
            s.parse::<u32>().map_err(ContextErrorOr::parse)
        })
        .try_par_map(8, |n| async move { Ok(n * 2) })
        .try_collect()
        .await;
    assert_eq!(parsed.unwrap(), [2, 4, 6]);
    let mut any: Vec<u32> = stream::iter(0..5_u32)
        .map(Ok::<_, ContextErrorOr>)
        .try_par_map_unordered(2, |n| async move { Ok(n) })
        .try_collect()
        .await
        .unwrap();
    any.sort_unstable();
    assert_eq!(any, [0, 1, 2, 3, 4]);
    let done: Result<(), ContextErrorOr> = stream::iter(0..5_u32)
        .map(Ok)
        .try_par_for_each(2, |_n| async move { Ok(()) })
        .await;
    assert!(done.is_ok());

    let keyed: Vec<(u32, u32)> = stream::iter((0..12_u32).map(|i| (i % 3, i)))
        .par_map_keyed(3, |item: &(u32, u32)| item.0, |item| async move { item })
        .collect()
        .await;
    for key in 0..3 {
        let of_key: Vec<u32> = keyed.iter().filter(|i| i.0 == key).map(|i| i.1).collect();
        assert!(
            of_key.windows(2).all(|w| w[0] < w[1]),
            "in order within a key"
        );
    }

    let pool = WorkerPool::new(2);
    let handle = pool.submit(async { 21 * 2 }).await.unwrap();
    assert_eq!(handle.await.unwrap(), 42);
    let shed = pool.try_submit(async { 1 });
    assert!(shed.is_ok());
    pool.resize(3);
    let stats = pool.stats();
    let _ = (
        stats.submitted,
        stats.running,
        stats.waiting,
        stats.completed,
    );
    let _ = (stats.failed, stats.panicked, stats.rejected);
    pool.close();
    pool.join().await;
    WorkerPool::new(1).abort();

    let group_ctx = TaskContext::background();
    let mut group = TaskGroup::new(&group_ctx).limit(2);
    group.spawn(async { Ok::<(), std::io::Error>(()) });
    group.spawn(async { Err(std::io::Error::other("first")) });
    let own: TaskContext = group.context().clone();
    let err = group.wait().await.unwrap_err();
    assert_eq!(err.to_string(), "first");
    assert!(
        own.is_cancelled(),
        "the first error cancels the group's context"
    );
    assert!(!group_ctx.is_cancelled(), "never the parent's");
}

/// An error type a `try_` pool can end with: its own failure or the context's.
#[derive(Debug)]
enum ContextErrorOr {
    Parse,
    #[allow(dead_code, reason = "read through Debug only")]
    Context(ContextError),
}

impl ContextErrorOr {
    fn parse(_: std::num::ParseIntError) -> Self {
        ContextErrorOr::Parse
    }
}

impl From<Closed> for ContextErrorOr {
    fn from(_: Closed) -> Self {
        ContextErrorOr::Parse
    }
}

impl From<ContextError> for ContextErrorOr {
    fn from(e: ContextError) -> Self {
        ContextErrorOr::Context(e)
    }
}

/// "Rate limiting": every form the section names.
#[tokio::test(start_paused = true)]
async fn rate_limiting_forms() {
    let smooth: Vec<u32> = stream::iter(0..3_u32)
        .rate_limit(Rate::per_second(10))
        .collect()
        .await;
    assert_eq!(smooth, [0, 1, 2]);
    let _ = Rate::per_minute(60);
    let _ = Rate::every(Duration::from_millis(5)).burst(2);
    let weighted: Vec<u32> = stream::iter(1..4_u32)
        .rate_limit_weighted(Rate::per_second(100).burst(5), |x: &u32| *x)
        .collect()
        .await;
    assert_eq!(weighted, [1, 2, 3]);
    let limiter = RateLimiter::new(Rate::per_second(100));
    let a: Vec<u32> = stream::iter(0..2_u32)
        .rate_limit_shared(limiter.clone())
        .collect()
        .await;
    assert_eq!(a, [0, 1]);
    let b: Vec<u32> = stream::iter(0..2_u32)
        .rate_limit_shared(&limiter)
        .collect()
        .await;
    assert_eq!(b, [0, 1]);
    let by: Vec<u32> = stream::iter(0..4_u32)
        .rate_limit_by(|x: &u32| x % 2, Rate::per_second(100))
        .collect()
        .await;
    assert_eq!(by, [0, 1, 2, 3]);

    // The rest of Go's rate.
    limiter.set_rate(Rate::per_second(1_000));
    limiter.set_burst(3);
    assert!(limiter.check().is_ok());
    let _ = Rate::unlimited();
    let _ = KeyedRateLimiter::<u32>::new(Rate::per_second(1));
}

/// "Pub/sub": every row of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_table() {
    let ctx = TaskContext::background();
    let topic: Topic<u32> = Topic::new(4)
        .policy(SlowSubscriber::Backpressure)
        .replay(1)
        .context(&ctx);
    assert_eq!(topic.publish(0).await.unwrap(), 0, "no subscriber: Ok(0)");
    let sub: Subscription<u32> = topic.subscribe();
    let lossy = topic.subscribe_with(SlowSubscriber::DropOldest);
    assert_eq!(topic.subscriber_count(), 2);
    assert_eq!(topic.publish(1).await.unwrap(), 2);
    assert!(topic.try_publish(2).is_ok());
    topic.close();
    assert_eq!(sub.collect::<Vec<u32>>().await, [0, 1, 2], "replayed 0");
    assert_eq!(lossy.missed(), 0);
    assert!(topic.publish(3).await.is_err(), "closed: the message back");
    let _ = [
        SlowSubscriber::DropNewest,
        SlowSubscriber::Disconnect,
        SlowSubscriber::DropOldest,
    ];
}

/// "Graceful shutdown": every row of the table.
#[tokio::test(start_paused = true)]
async fn shutdown_table() {
    let shutdown = Shutdown::new();
    let ctx: TaskContext = shutdown.context().clone();
    let source = stream::iter(0..).close_on(&shutdown);
    let sd = shutdown.clone();
    shutdown.spawn("consumer", async move {
        let mut source = std::pin::pin!(source);
        while source.next().await.is_some() {
            tokio::task::yield_now().await;
            if !sd.is_draining() {
                sd.trigger();
            }
        }
    });
    shutdown.draining().await;
    assert!(shutdown.is_draining());
    let report: ShutdownReport = shutdown.wait(Duration::from_secs(1)).await;
    assert!(report.is_clean());
    assert!(report.aborted().is_empty());
    let _: Duration = report.drain_time();
    assert!(
        ctx.is_cancelled(),
        "the abort phase cancels the root context"
    );
    let _ = Shutdown::new().on_signals();
}

/// "Pipeline": stages compose with operators and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_reads_like_a_chain() {
    let pipeline = Pipeline::new(stream::iter(0..10_u32))
        .stage("double", |x| async move { Ok::<_, ContextError>(x * 2) })
        .stage(Stage::new("inc").workers(2).skip_errors(), |x| async move {
            Ok::<_, ContextError>(x + 1)
        });
    let stats = pipeline.stats();
    let out: Vec<u32> = pipeline.try_collect().await.unwrap();
    assert_eq!(out.len(), 10);
    assert_eq!(stats.stages().len(), 2);
    let _ = Retry::exponential(Duration::from_millis(10));
}

/// "The rest of Go's context, errgroup".
#[tokio::test(start_paused = true)]
async fn rest_of_go_context_and_errgroup() {
    let ctx = TaskContext::background().with_value(SessionId("9".into()));
    let detached = ctx.without_cancel();
    let guard = ctx.after_cancel(|| {});
    ctx.cancel();
    assert!(!detached.is_cancelled());
    assert_eq!(detached.value::<SessionId>().unwrap().0, "9");
    tokio::task::yield_now().await;
    let _: bool = guard.stop();

    let root = TaskContext::background();
    let cause_ctx = root.with_timeout_cause(Duration::from_secs(1), std::io::Error::other("slow"));
    let _ = root.with_deadline_cause(
        tokio::time::Instant::now() + Duration::from_secs(1),
        std::io::Error::other("late"),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cause_ctx.err(), Some(ContextError::DeadlineExceeded));
    assert!(matches!(cause_ctx.cause(), Some(ContextError::Cause(_))));

    let group_ctx = TaskContext::background();
    let mut group = TaskGroup::new(&group_ctx).limit(1);
    group.spawn(async { std::future::pending::<Result<(), std::io::Error>>().await });
    let refused = group.try_spawn(async { Ok(()) });
    assert!(refused.is_err(), "at the limit: TryGo fails fast");
    group_ctx.cancel();
}
