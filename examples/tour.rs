//! A quick tour of every pattern tokio-conc has so far: `cargo run --example tour`.
//!
//! Each step prints what happens; the whole tour takes about a second.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio_conc::prelude::*;

#[tokio::main]
async fn main() {
    context().await;
    generator().await;
    fan_in_step().await;
    par_map().await;
    worker_pool().await;
    errgroup().await;
    rate_limit().await;
    fan_out().await;
    pipeline().await;
    shutdown().await;
    pubsub().await;
}

/// Go's `context.WithTimeout` + `WithValue`.
async fn context() {
    println!("== context: a request with a deadline");
    let request = TaskContext::background()
        .with_value("session-42")
        .with_timeout(Duration::from_millis(100));
    let outcome = request
        .run(tokio::time::sleep(Duration::from_secs(5)))
        .await;
    println!(
        "   session {:?}: slow call stopped with {:?}",
        request.value::<&str>(),
        outcome.unwrap_err()
    );
}

/// A long-lived pool, as a service keeps one.
async fn worker_pool() {
    println!("== worker pool: a long-lived pool for a service");
    let pool = WorkerPool::new(Workers::new(2).buffer(2).name("thumbnails"));
    let mut handles = Vec::new();
    for image in 1..=4_u64 {
        handles.push(
            pool.submit(async move { image * 100 })
                .await
                .expect("pool is open"),
        );
    }
    pool.join().await; // close + drain
    let mut sizes = Vec::new();
    for handle in handles {
        sizes.push(handle.await.expect("no job panicked"));
    }
    println!("   sizes {sizes:?}; completed {}", pool.stats().completed);
}

/// Go's errgroup: the first failure cancels the rest.
async fn errgroup() {
    println!("== errgroup: the first failure cancels the rest");
    let mut group = TaskGroup::new(&TaskContext::background());
    for (name, millis, fails) in [("a", 10, false), ("b", 20, true), ("c", 1_000, false)] {
        group.spawn(async move {
            let ctx = TaskContext::current().expect("the group's context");
            match ctx
                .run(tokio::time::sleep(Duration::from_millis(millis)))
                .await
            {
                Err(stopped) => Err(format!("{name}: {stopped}")),
                Ok(()) if fails => Err(format!("{name}: failed")),
                Ok(()) => Ok(()),
            }
        });
    }
    println!("   wait() -> {:?}", group.wait().await);
}

/// Go's bursty limiter, and what happens to what is over the quota.
async fn rate_limit() {
    println!("== rate limiting: 3 at once, then one every 50 ms (Go's bursty limiter)");
    let start = tokio::time::Instant::now();
    let at: Vec<u128> = futures::stream::iter(1..=5)
        .rate_limit(Rate::every(Duration::from_millis(50)).burst(3))
        .map(|_| start.elapsed().as_millis())
        .collect()
        .await;
    println!("   requests passed at {at:?} ms");
    let over = futures::stream::iter(1..=5)
        .rate_limit(Rate::per_second(10).burst(2))
        .drop_over_quota();
    let dropped = over.drop_counter();
    let kept: Vec<i32> = over.collect().await;
    println!("   drop policy kept {kept:?}, dropped {}", dropped.get());
}

/// Fan-out three ways: work sharing, broadcast, partition by key.
async fn fan_out() {
    println!("== fan-out: three workers share one stream of jobs; each job goes to exactly one");
    let workers: Vec<_> = futures::stream::iter(1..=9)
        .fan_out(3)
        .into_iter()
        .map(|jobs| {
            tokio::spawn(
                jobs.then(|job| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await; // the work
                    job
                })
                .collect::<Vec<_>>(),
            )
        })
        .collect();
    for (id, worker) in workers.into_iter().enumerate() {
        println!("   worker {id} did {:?}", worker.await.unwrap());
    }
    println!("== broadcast: every listener hears every event, at the slowest one's pace");
    let listeners = futures::stream::iter(["deploy", "rollback"]).broadcast(2, 8);
    let heard =
        futures::future::join_all(listeners.into_iter().map(|l| l.collect::<Vec<_>>())).await;
    println!("   {heard:?}");
    println!("== partition: equal keys share a lane, in order");
    let orders = futures::stream::iter([("ann", 1), ("bob", 2), ("ann", 3)]);
    let lanes = orders.partition(2, |(customer, _): &(&str, u32)| *customer);
    let lanes = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<_>>())).await;
    println!("   {lanes:?}");
}

/// Go's publisher and subscribers: a topic, with a policy for slow subscribers.
async fn pubsub() {
    println!("== pub/sub: every subscriber gets every message; a slow one chooses what to lose");
    let alerts = Topic::new(2);
    let pager = tokio::spawn(alerts.subscribe().collect::<Vec<u32>>()); // Backpressure: all
    let mut late = alerts
        .subscribe_with(SlowSubscriber::DropOldest)
        .with_gaps();
    for alert in 1..=5 {
        let reached = alerts.publish(alert).await.unwrap();
        println!("   alert {alert} reached {reached} subscribers");
    }
    alerts.close(); // both drain what they hold, then end
    println!("   pager got {:?}", pager.await.unwrap());
    let mut seen = Vec::new();
    while let Some(item) = late.next().await {
        seen.push(item);
    }
    println!("   the late reader got {seen:?} (missed {})", late.missed());
}

/// Go's generator: lazy (unbuffered channel) and running ahead (buffered).
async fn generator() {
    println!("== generator: lazy, and running ahead");
    let squares: Vec<u64> = generate(|y| async move {
        let mut i = 1_u64;
        loop {
            y.send(i * i).await?;
            i += 1;
        }
    })
    .take(4)
    .collect()
    .await;
    println!("   first squares: {squares:?}");
    let mut ahead = generate_ahead(2, |y| async move {
        let mut n = 0_u32;
        while y.send(n).await.is_ok() {
            n += 1;
        }
        println!("   producer: send({n}) failed, the consumer left; stopping");
        Ok(())
    });
    println!(
        "   took {:?} and {:?}, then dropped the stream",
        ahead.next().await,
        ahead.next().await
    );
    drop(ahead);
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Go's fan-in: several producers merged into one stream, fairly.
async fn fan_in_step() {
    println!("== fan-in: three producers merged into one stream");
    let producers = (0..3).map(|p| {
        generate_ahead(2, move |y: Yielder<String>| async move {
            for i in 0..2 {
                y.send(format!("producer {p}, item {i}")).await?;
            }
            Ok(())
        })
    });
    let mut merged = fan_in(producers);
    while let Some(message) = merged.next().await {
        println!("   {message}");
    }
}

/// Go's worker pool as a stream operator: parallel, ordered or not, fail-fast.
async fn par_map() {
    println!("== par_map: 4 workers on spawned tasks, results in input order");
    let squares: Vec<u64> = futures::stream::iter(1..=8_u64)
        .par_map(Workers::new(4).name("square"), |x| async move { x * x })
        .collect()
        .await;
    println!("   {squares:?}");
    println!("== try_par_map: fallible stages chain; the first error ends the stream");
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let checked: Vec<Result<u32, Error>> = futures::stream::iter(["1", "2", "3", "four", "5"])
        .map(Ok::<_, Error>)
        .try_par_map(4, |s| async move { Ok(s.parse::<u32>()?) })
        .try_par_map(2, |x| async move { Ok(x * 10) })
        .collect()
        .await;
    println!("   {checked:?}");
    println!("== par_map_keyed: parallel across users, in order for each user");
    let per_user: Vec<(char, u32)> =
        futures::stream::iter([('a', 1), ('b', 1), ('a', 2), ('b', 2), ('a', 3)])
            .par_map_keyed(2, |(user, _)| *user, |event| async move { event })
            .collect()
            .await;
    println!("   {per_user:?}");
}

/// Go's pipeline with named stages: live stats and a policy per stage.
async fn pipeline() {
    println!("== pipeline: named stages, a bad item skipped and counted, stats at the end");
    let lines = futures::stream::iter(["4", "8", "fifteen", "16", "23", "42"]);
    let pipeline: Pipeline<u64, tokio_conc::pipeline::BoxError> = Pipeline::new(lines)
        .stage(Stage::new("parse").skip_errors(), |line| async move {
            Ok(line.parse::<u64>()?)
        })
        .stage(Stage::new("double").workers(3), |n| async move {
            tokio::time::sleep(Duration::from_millis(n)).await; // the work
            Ok(n * 2)
        });
    let stats = pipeline.stats(); // readable from any task while it runs
    let doubled: Vec<u64> = pipeline.try_collect().await.expect("no stage stopped it");
    println!("   {doubled:?}");
    for line in stats.report().to_string().lines() {
        println!("   {line}");
    }
}

/// Graceful shutdown: drain, then abort what outlives the grace period.
async fn shutdown() {
    println!("== shutdown: the source closes, the pool drains, a stuck task is aborted and named");
    let shutdown = Shutdown::new(); // a service adds .on_signals() for Ctrl-C and SIGTERM
    let handled = futures::stream::iter(1..)
        .rate_limit(Rate::every(Duration::from_millis(10)))
        .close_on(&shutdown)
        .par_map_unordered(
            Workers::new(4).context(shutdown.context()),
            |request| async move {
                tokio::time::sleep(Duration::from_millis(30)).await; // handling it
                request
            },
        );
    let served = shutdown.spawn("server", handled.count());
    shutdown.spawn("stuck", std::future::pending::<()>()); // ignores the drain
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.trigger();
    let report = shutdown.wait(Duration::from_millis(200)).await;
    println!("   served {} requests; {report}", served.await.unwrap());
}
