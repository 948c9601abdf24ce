//! Shutdown guarantees: the drain delivers what is in flight, the grace
//! period bounds it, what outlives it is aborted and named, the context is
//! cancelled only then, and no task outlives the shutdown. Signals live in
//! `shutdown_signals.rs`, tracing in `shutdown_tracing.rs` (process-global).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use tokio_conc::fan_out::Branches;
use tokio_conc::prelude::*;
use tokio_conc::pubsub::{EndReason, Subscription};

mod common;

use common::{DropCount, alive_tasks, until, within, yield_times};

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// `source.close_on(&sd).par_map_unordered(..).fan_out(3)` into counting
/// sinks, triggered mid-stream: the total the sinks got, the count that
/// entered the pool, and the count the sinks had at the trigger.
async fn drain_a_pipeline(shutdown: &Shutdown, run_for: Duration) -> (usize, usize, usize) {
    let entered = counter();
    let into_pool = entered.clone();
    let branches = futures::stream::iter(0_u64..)
        .close_on(shutdown)
        .inspect(move |_| {
            into_pool.fetch_add(1, SeqCst);
        })
        .par_map_unordered(
            Workers::new(4).buffer(8).context(shutdown.context()),
            |x| async move {
                sleep(Duration::from_millis(10 + x % 7)).await;
                x
            },
        )
        .fan_out(3);
    let sunk = counter();
    for (i, branch) in branches.into_iter().enumerate() {
        let sunk = sunk.clone();
        shutdown.spawn(
            format!("sink-{i}"),
            branch.for_each(move |_| {
                sunk.fetch_add(1, SeqCst);
                async {}
            }),
        );
    }
    sleep(run_for).await;
    shutdown.trigger();
    let sunk_at_trigger = sunk.load(SeqCst);
    let report = within("the drain", shutdown.wait(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.drain_time() <= Duration::from_secs(30));
    (sunk.load(SeqCst), entered.load(SeqCst), sunk_at_trigger)
}

#[tokio::test(start_paused = true)]
async fn a_triggered_pipeline_delivers_every_item_that_entered_the_pool() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let (sunk, entered, sunk_at_trigger) =
        drain_a_pipeline(&shutdown, Duration::from_millis(95)).await;
    assert!(sunk_at_trigger > 0, "it ran before the trigger");
    assert!(
        sunk_at_trigger < entered,
        "items were in flight at the trigger ({sunk_at_trigger} of {entered})"
    );
    assert_eq!(
        sunk, entered,
        "every item that entered the pool reached a sink"
    );
    assert!(
        shutdown.context().is_cancelled(),
        "cancelled when the shutdown ended"
    );
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggered_pipeline_drains_on_a_multi_thread_runtime() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let (sunk, entered, _) = drain_a_pipeline(&shutdown, Duration::from_millis(60)).await;
    assert!(entered > 0);
    assert_eq!(
        sunk, entered,
        "every item that entered the pool reached a sink"
    );
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_ignoring_the_drain_is_aborted_after_the_grace_period_and_named() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let ctx = shutdown.context().clone();
    let draining = shutdown.draining();
    let polite = shutdown.spawn("polite", async move {
        draining.await;
        sleep(Duration::from_secs(1)).await; // finishing up
        "done"
    });
    let dropped = counter();
    let guard = DropCount(dropped.clone());
    let stubborn = shutdown.spawn("stubborn", async move {
        let _guard = guard;
        loop {
            sleep(Duration::from_millis(100)).await;
        }
    });
    let cancelled_at = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            ctx.cancelled().await;
            Instant::now()
        }
    });

    sleep(Duration::from_secs(1)).await;
    let triggered = Instant::now();
    shutdown.trigger();
    let waiting = tokio::spawn(shutdown.wait(Duration::from_secs(5)));
    sleep(Duration::from_millis(4_999)).await;
    assert!(!ctx.is_cancelled(), "draining is not cancelling");
    assert!(!waiting.is_finished(), "the grace period is not over");
    assert_eq!(polite.await.unwrap(), "done");

    let report = within("wait", waiting).await.unwrap();
    assert_eq!(report.aborted(), ["stubborn"]);
    assert!(!report.is_clean());
    assert_eq!(report.drain_time(), Duration::from_secs(5));
    let cancelled_at = within("the context", cancelled_at).await.unwrap();
    assert_eq!(
        cancelled_at - triggered,
        Duration::from_secs(5),
        "cancelled at the abort phase"
    );
    assert!(stubborn.await.unwrap_err().is_cancelled());
    assert_eq!(dropped.load(SeqCst), 1);
    until("every task is gone", || alive_tasks() == baseline).await;
}

/// A tracked task that ignores the drain but stops on its context sees the
/// cancellation at the abort phase, gets to run its way out, and is still
/// named: it outlived the drain.
#[tokio::test(start_paused = true)]
async fn a_task_stopping_on_the_context_reacts_at_the_abort_phase_and_is_named() {
    let shutdown = Shutdown::new();
    let ctx = shutdown.context().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = shutdown.spawn("watcher", async move {
        ctx.cancelled().await;
        tx.send(Instant::now()).unwrap();
        "stopped by the context"
    });
    let triggered = Instant::now();
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(3))).await;
    assert_eq!(report.aborted(), ["watcher"]);
    assert_eq!(
        rx.await.expect("the watcher ran after the cancellation") - triggered,
        Duration::from_secs(3)
    );
    assert_eq!(watcher.await.unwrap(), "stopped by the context");
}

#[tokio::test(start_paused = true)]
async fn wait_returns_when_every_task_has_ended_without_a_trigger() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    for seconds in 1..=3 {
        shutdown.spawn(
            format!("job-{seconds}"),
            sleep(Duration::from_secs(seconds)),
        );
    }
    let closed = futures::stream::pending::<u8>().close_on(&shutdown);
    let start = Instant::now();
    let report = within("wait", shutdown.wait(Duration::from_secs(60))).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.drain_time(), Duration::ZERO);
    assert!(
        shutdown.is_draining(),
        "the end of every task starts the drain"
    );
    assert!(shutdown.context().is_cancelled());
    assert_eq!(
        within("a close_on stream", closed.collect::<Vec<_>>()).await,
        Vec::<u8>::new()
    );
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn wait_without_any_task_returns_at_once() {
    let shutdown = Shutdown::new();
    let start = Instant::now();
    let report = within("wait", shutdown.wait(Duration::from_secs(60))).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(report.is_clean());
}

#[tokio::test(start_paused = true)]
async fn triggering_twice_is_one_drain() {
    let shutdown = Shutdown::new();
    let draining = shutdown.draining();
    shutdown.spawn("flush", async move {
        draining.await;
        sleep(Duration::from_secs(2)).await;
    });
    shutdown.trigger();
    assert!(shutdown.is_draining());
    sleep(Duration::from_secs(1)).await;
    shutdown.clone().trigger();
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(10))).await;
    assert!(report.is_clean());
    assert_eq!(
        report.drain_time(),
        Duration::from_secs(2),
        "measured from the first trigger"
    );
}

#[tokio::test(start_paused = true)]
async fn the_grace_period_counts_from_the_trigger() {
    let shutdown = Shutdown::new();
    shutdown.spawn("stuck", std::future::pending::<()>());
    shutdown.trigger();
    sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let report = within("wait", shutdown.wait(Duration::from_secs(5))).await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(report.aborted(), ["stuck"]);
    assert_eq!(report.drain_time(), Duration::from_secs(5));
}

/// Spawning while draining is allowed, and the task is tracked: the drain
/// waits for it, and aborts it if it outlives the grace period.
#[tokio::test(start_paused = true)]
async fn tasks_spawned_while_draining_are_tracked() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let flushed = Arc::new(AtomicBool::new(false));
    let flag = flushed.clone();
    let flush = shutdown.spawn("flush", async move {
        sleep(Duration::from_secs(2)).await;
        flag.store(true, SeqCst);
    });
    let late = shutdown.spawn("late-and-stuck", std::future::pending::<()>());
    let report = within("wait", shutdown.wait(Duration::from_secs(5))).await;
    assert!(flushed.load(SeqCst), "the drain waited for the flush");
    flush.await.unwrap();
    assert_eq!(report.aborted(), ["late-and-stuck"]);
    assert!(late.await.unwrap_err().is_cancelled());
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_only_spawns_while_draining_is_clean() {
    let shutdown = Shutdown::new();
    let parent = shutdown.clone();
    let draining = shutdown.draining();
    shutdown.spawn("server", async move {
        draining.await;
        // A goodbye, spawned during the drain; the parent ends first.
        parent.spawn("goodbye", sleep(Duration::from_millis(300)));
    });
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(5))).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.drain_time(), Duration::from_millis(300));
}

/// Once the abort phase has begun, a new task is aborted before it runs.
#[tokio::test(start_paused = true)]
async fn a_task_spawned_after_the_abort_is_aborted_before_it_runs() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let first = within("wait", shutdown.wait(Duration::from_secs(1))).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let late = shutdown.spawn("too-late", async move { flag.store(true, SeqCst) });
    assert!(
        within("the late task", late)
            .await
            .unwrap_err()
            .is_cancelled()
    );
    assert!(!ran.load(SeqCst));
    let again = within("wait again", shutdown.wait(Duration::from_secs(1))).await;
    assert_eq!(again, first, "one shutdown, one report");
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_shutdown_aborts_its_tasks() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let ctx = shutdown.context().clone();
    let dropped = counter();
    let mut handles = Vec::new();
    for i in 0..3 {
        let guard = DropCount(dropped.clone());
        handles.push(shutdown.spawn(format!("worker-{i}"), async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }));
    }
    yield_times(20).await;
    assert_eq!(alive_tasks(), baseline + 3);

    let clone = shutdown.clone();
    drop(shutdown);
    yield_times(20).await;
    assert_eq!(alive_tasks(), baseline + 3, "a clone still holds it");
    assert!(!ctx.is_cancelled());

    drop(clone);
    until("every task is gone", || alive_tasks() == baseline).await;
    assert_eq!(dropped.load(SeqCst), 3);
    assert!(ctx.is_cancelled());
    for handle in handles {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_wait_midway_leaves_the_shutdown_running() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    shutdown.spawn("stuck", std::future::pending::<()>());
    shutdown.trigger();
    let cut_short = tokio::time::timeout(
        Duration::from_secs(1),
        shutdown.wait(Duration::from_secs(5)),
    )
    .await;
    assert!(cut_short.is_err());
    assert_eq!(shutdown.running(), 1, "nothing was aborted");
    assert!(!shutdown.context().is_cancelled());
    let report = within("wait", shutdown.wait(Duration::from_secs(5))).await;
    assert_eq!(report.aborted(), ["stuck"]);
    drop(shutdown);
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn waits_on_several_clones_share_one_report() {
    let shutdown = Shutdown::new();
    shutdown.spawn("stuck", std::future::pending::<()>());
    shutdown.spawn("quick", sleep(Duration::from_millis(10)));
    let waits: Vec<_> = (0..3)
        .map(|_| tokio::spawn(shutdown.clone().wait(Duration::from_secs(2))))
        .collect();
    shutdown.trigger();
    let mut reports = Vec::new();
    for wait in waits {
        reports.push(within("a wait", wait).await.unwrap());
    }
    assert_eq!(reports[0].aborted(), ["stuck"]);
    assert!(reports.iter().all(|r| *r == reports[0]));
}

#[tokio::test(start_paused = true)]
async fn tracked_tasks_run_with_the_context_current_and_panics_reach_the_handle() {
    let shutdown = Shutdown::new();
    let root = shutdown.context().clone();
    let seen = shutdown.spawn("reader", async move {
        let current = TaskContext::current().expect("the shutdown's context");
        current.token().is_cancelled() == root.is_cancelled()
    });
    assert!(seen.await.unwrap());
    let boom = shutdown.spawn("boom", async { panic!("bad input") });
    let err = boom.await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(
        err.into_panic().downcast_ref::<&str>(),
        Some(&"bad input"),
        "payload intact"
    );
    let report = within("wait", shutdown.wait(Duration::from_secs(1))).await;
    assert_eq!(report.panicked(), ["boom"]);
    assert!(report.is_clean(), "a panic is not an abort");
}

/// A WorkerPool bound to the shutdown's context, closed and joined by a
/// tracked task once draining begins, finishes its queue inside the grace
/// period.
#[tokio::test(start_paused = true)]
async fn a_worker_pool_closed_on_draining_drains_within_the_grace_period() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let pool = WorkerPool::new(
        Workers::new(2)
            .buffer(16)
            .context(shutdown.context())
            .name("jobs"),
    );
    let mut handles = Vec::new();
    for job in 0..10_u32 {
        let handle = pool
            .submit(async move {
                sleep(Duration::from_millis(100)).await;
                job
            })
            .await
            .unwrap();
        handles.push(handle);
    }
    let draining = shutdown.draining();
    let closing = pool.clone();
    shutdown.spawn("pool", async move {
        draining.await;
        closing.join().await; // close, then drain
    });
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(2))).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.drain_time(),
        Duration::from_millis(500),
        "10 jobs, 2 workers"
    );
    let mut done = Vec::new();
    for handle in handles {
        done.push(handle.await.unwrap());
    }
    assert_eq!(done, (0..10).collect::<Vec<_>>());
    assert_eq!(pool.stats().completed, 10);
    drop(pool);
    until("every task is gone", || alive_tasks() == baseline).await;
}

/// A pool whose queue outlasts the grace period: its drain task is aborted
/// and named, and the cancelled context stops the pool's workers.
#[tokio::test(start_paused = true)]
async fn a_worker_pool_outlasting_the_grace_period_is_stopped_by_the_context() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let pool = WorkerPool::new(Workers::new(1).buffer(4).context(shutdown.context()));
    let slow = pool.submit(sleep(Duration::from_secs(60))).await.unwrap();
    let draining = shutdown.draining();
    let closing = pool.clone();
    shutdown.spawn("pool", async move {
        draining.await;
        closing.join().await;
    });
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(1))).await;
    assert_eq!(report.aborted(), ["pool"]);
    assert!(slow.await.unwrap_err().is_cancelled());
    within("the pool's join", pool.join()).await;
    drop(pool);
    until("every task is gone", || alive_tasks() == baseline).await;
}

/// A generator of requests, rate limited and closed on draining, shared by a
/// TaskGroup of workers through fan-out branches bound to the context.
#[tokio::test(start_paused = true)]
async fn generators_rate_limits_fan_out_and_task_groups_compose() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let requests = generate(|y: Yielder<u32>| async move {
        for i in 0.. {
            y.send(i).await?;
        }
        Ok::<(), Closed>(())
    })
    .context(shutdown.context())
    .rate_limit(Rate::per_second(10))
    .context(shutdown.context())
    .close_on(&shutdown);
    let served = counter();
    let count = served.clone();
    shutdown.spawn("workers", async move {
        let ctx = TaskContext::current().expect("the shutdown's context");
        let mut group = TaskGroup::new(&ctx);
        for branch in requests.fan_out(Branches::new(2).context(&ctx)) {
            let count = count.clone();
            group.spawn(async move {
                branch
                    .for_each(|_| {
                        count.fetch_add(1, SeqCst);
                        sleep(Duration::from_millis(50))
                    })
                    .await;
                Ok::<(), Infallible>(())
            });
        }
        group.wait().await
    });
    sleep(Duration::from_millis(1_050)).await;
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(5))).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        served.load(SeqCst),
        11,
        "one request every 100 ms from 0 to 1000 ms"
    );
    assert!(report.drain_time() <= Duration::from_millis(50));
    until("every task is gone", || alive_tasks() == baseline).await;
}

/// What the abort phase stops is never silent: a generator bound to the
/// context, read by a task the shutdown does not track, sees the context's
/// error in `send` when the grace period ends, and not before.
#[tokio::test(start_paused = true)]
async fn the_abort_phase_reaches_generators_bound_to_the_context() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let stopped = Arc::new(std::sync::Mutex::new(None));
    let why = stopped.clone();
    let ticks = generate_ahead(1, move |y: Yielder<u32>| async move {
        loop {
            if let Err(closed) = y.send(1).await {
                *why.lock().unwrap() = Some((Instant::now(), closed.context_error().cloned()));
                return Ok(());
            }
        }
    })
    .context(shutdown.context());
    let consumer = tokio::spawn(ticks.then(|_| sleep(Duration::from_secs(1))).count());
    shutdown.spawn("stuck", std::future::pending::<()>());
    sleep(Duration::from_millis(500)).await;
    let triggered = Instant::now();
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_millis(2_500))).await;
    assert_eq!(report.aborted(), ["stuck"]);
    within("the consumer", consumer).await.unwrap();
    let (at, reason) = stopped
        .lock()
        .unwrap()
        .clone()
        .expect("the producer stopped");
    assert_eq!(at - triggered, Duration::from_millis(2_500));
    assert_eq!(reason, Some(ContextError::Cancelled));
    until("every task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn close_on_keeps_what_the_source_did_not_yield() {
    let shutdown = Shutdown::new();
    let mut source = futures::stream::iter(0..5).close_on(&shutdown);
    assert_eq!(source.next().await, Some(0));
    assert_eq!(source.next().await, Some(1));
    shutdown.trigger();
    assert_eq!(source.next().await, None);
    assert!(futures::stream::FusedStream::is_terminated(&source));
    assert_eq!(source.next().await, None);
    assert_eq!(futures::Stream::size_hint(&source), (0, Some(0)));
    assert_eq!(source.into_inner().collect::<Vec<_>>().await, [2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn close_on_wakes_a_waiting_consumer() {
    let shutdown = Shutdown::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<u8>(1);
    let consumer = tokio::spawn(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .close_on(&shutdown)
            .collect::<Vec<_>>(),
    );
    tx.send(7).await.unwrap();
    yield_times(20).await;
    shutdown.trigger();
    assert_eq!(within("the consumer", consumer).await.unwrap(), [7]);
    drop(tx);
}

/// A subscriber that reads slowly (10 ms a message) until its subscription
/// ends: what it got, and why it ended.
async fn slow_reader(mut sub: Subscription<u32>) -> (Vec<u32>, Option<EndReason>) {
    let mut got = Vec::new();
    while let Some(msg) = sub.next().await {
        got.push(msg);
        sleep(Duration::from_millis(10)).await;
    }
    (got, sub.end_reason())
}

/// Pub/sub under a shutdown: a tracked task closes the topic when draining
/// begins, the publisher stops at the close, every subscriber drains what was
/// published before it, and nothing is left for the abort phase.
#[tokio::test(start_paused = true)]
async fn a_topic_closed_on_draining_is_drained_by_every_subscriber() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let topic = Topic::new(4).context(shutdown.context());
    let readers: Vec<_> = (0..2)
        .map(|i| shutdown.spawn(format!("reader-{i}"), slow_reader(topic.subscribe())))
        .collect();
    let publisher = shutdown.spawn("publisher", {
        let topic = topic.clone();
        async move {
            let mut published = 0;
            while topic.publish(published).await.is_ok() {
                published += 1;
                sleep(Duration::from_millis(5)).await;
            }
            published
        }
    });
    let draining = shutdown.draining();
    shutdown.spawn("closer", async move {
        draining.await;
        topic.close();
    });
    sleep(Duration::from_millis(200)).await;
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(10))).await;
    assert!(report.is_clean(), "{report}");
    assert!(
        report.drain_time() <= Duration::from_millis(60),
        "a reader holds at most 4 messages: {report}"
    );
    let published = publisher.await.unwrap();
    assert!(
        published >= 15,
        "it published before the trigger ({published})"
    );
    for reader in readers {
        let (got, why) = reader.await.unwrap();
        assert_eq!(got, (0..published).collect::<Vec<_>>(), "nothing lost");
        assert_eq!(why, Some(EndReason::Closed));
    }
    until("every task is gone", || alive_tasks() == baseline).await;
}

/// A topic nobody closes keeps its subscribers waiting through the drain; the
/// abort phase (the shutdown's context) aborts it: they end, say why, and are
/// named in the report as having outlived the drain.
#[tokio::test(start_paused = true)]
async fn the_abort_phase_aborts_a_topic_still_open() {
    let baseline = alive_tasks();
    let shutdown = Shutdown::new();
    let topic = Topic::new(4).context(shutdown.context());
    let reader = shutdown.spawn("reader", slow_reader(topic.subscribe()));
    for msg in 0..3 {
        assert_eq!(topic.publish(msg).await, Ok(1));
    }
    sleep(Duration::from_millis(100)).await;
    let triggered = Instant::now();
    shutdown.trigger();
    let report = within("wait", shutdown.wait(Duration::from_secs(2))).await;
    assert_eq!(report.aborted(), ["reader"], "{report}");
    assert_eq!(Instant::now() - triggered, Duration::from_secs(2));
    // It reacted to the abort on its own, in the moment the abort phase gives.
    let (got, why) = reader.await.expect("the reader ended on the abort");
    assert_eq!(got, [0, 1, 2], "read before the trigger");
    assert_eq!(
        why,
        Some(EndReason::Cancelled(ContextError::Cancelled)),
        "the abort, not a close"
    );
    assert!(topic.is_closed());
    assert!(topic.publish(3).await.is_err());
    until("every task is gone", || alive_tasks() == baseline).await;
}
