//! Go's own errgroup tests (`errgroup_test.go`) ported to `TaskGroup`, and the
//! regression that every task handed to the group is started. Go's `Wait`
//! keeps the group; `TaskGroup::wait` consumes it, so a Go test that waits
//! and goes on uses a fresh group here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_conc::pool::{GroupStopped, TrySpawnError};
use tokio_conc::prelude::*;

mod common;
use common::within;

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Fail(u32);

/// Go's `TestZeroGroup` and `TestWithContext`: the first error returned is
/// the one `wait` reports, and the group's context is cancelled after it.
#[tokio::test(start_paused = true)]
async fn the_first_error_is_reported_and_the_context_is_done_after_wait() {
    let cases: [&[Option<Fail>]; 5] = [
        &[],
        &[None],
        &[Some(Fail(1))],
        &[Some(Fail(1)), None],
        &[Some(Fail(1)), None, Some(Fail(2))],
    ];
    for errs in cases {
        let mut group = TaskGroup::new(&TaskContext::background());
        let ctx = group.context().clone();
        for (i, err) in errs.iter().copied().enumerate() {
            group.spawn(async move {
                // Returned in list order, as Go's test waits after each `Go`.
                sleep(MS * i as u32).await;
                err.map_or(Ok(()), Err)
            });
        }
        let first = errs.iter().flatten().next().copied();
        assert_eq!(group.wait().await.err(), first, "{errs:?}");
        assert!(
            ctx.is_cancelled(),
            "the context is done after wait: {errs:?}"
        );
        if first.is_some() {
            let stopped = ctx.cause().and_then(|c| {
                c.cause()
                    .and_then(|c| c.downcast_ref::<GroupStopped>().copied())
            });
            assert_eq!(stopped, Some(GroupStopped::TaskFailed));
        }
    }
}

/// The regression: a task spawned before a failure but not yet started
/// (here: not yet polled on a current-thread runtime) was silently never
/// run. Go's `Go` always calls its function.
#[tokio::test(start_paused = true)]
async fn every_spawned_task_is_started_also_after_a_failure() {
    let started = Arc::new(AtomicUsize::new(0));
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&TaskContext::background());
    group.spawn(async { Err("first") });
    for _ in 0..3 {
        let (started, saw_cancel) = (started.clone(), saw_cancel.clone());
        group.spawn(async move {
            started.fetch_add(1, SeqCst);
            if TaskContext::current().unwrap().is_cancelled() {
                saw_cancel.fetch_add(1, SeqCst);
            }
            Ok(())
        });
    }
    // Spawned after the failure is known.
    sleep(MS).await;
    let (s, c) = (started.clone(), saw_cancel.clone());
    group.spawn(async move {
        s.fetch_add(1, SeqCst);
        if TaskContext::current().unwrap().is_cancelled() {
            c.fetch_add(1, SeqCst);
        }
        Ok(())
    });
    assert_eq!(group.wait().await, Err("first"));
    assert_eq!(started.load(SeqCst), 4, "every task ran");
    assert_eq!(saw_cancel.load(SeqCst), 4, "each saw the cancelled context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_starts_on_a_multi_thread_runtime_too() {
    for round in 0..50 {
        let started = Arc::new(AtomicUsize::new(0));
        let mut group = TaskGroup::new(&TaskContext::background()).limit(3);
        for i in 0..20 {
            let started = started.clone();
            group.spawn(async move {
                started.fetch_add(1, SeqCst);
                if i == 0 { Err(i) } else { Ok(()) }
            });
        }
        let mut refused = 0;
        for _ in 0..5 {
            let started = started.clone();
            if let Err(back) = group.try_spawn(async move {
                started.fetch_add(1, SeqCst);
                Ok(())
            }) {
                refused += 1;
                drop(back);
            }
        }
        assert_eq!(within("wait", group.wait()).await, Err(0));
        assert_eq!(started.load(SeqCst), 20 + 5 - refused, "round {round}");
    }
}

/// Go's `TestTryGo`, section by section.
#[tokio::test(start_paused = true)]
async fn try_spawn_fails_fast_at_the_limit_and_hands_the_task_back() {
    let n = 42;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let make = |tx: mpsc::Sender<()>| async move {
        tx.send(()).await.unwrap();
        Ok::<(), ()>(())
    };

    let mut group = TaskGroup::new(&TaskContext::background()).limit(n);
    for i in 0..n {
        assert!(
            group.try_spawn(make(tx.clone())).is_ok(),
            "call {i} must succeed"
        );
    }
    let refused: TrySpawnError<_> = group.try_spawn(make(tx.clone())).unwrap_err();
    drop(refused.into_inner());
    let drain = async {
        for _ in 0..n {
            rx.recv().await.unwrap();
        }
    };
    let (_, waited) = tokio::join!(drain, group.wait());
    assert_eq!(waited, Ok(()));

    // Switch limit.
    let mut group = TaskGroup::new(&TaskContext::background()).limit(1);
    assert!(group.try_spawn(make(tx.clone())).is_ok());
    assert!(group.try_spawn(make(tx.clone())).is_err());
    let (_, waited) = tokio::join!(rx.recv(), group.wait());
    assert_eq!(waited, Ok(()));

    // Without a limit, always.
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    for _ in 0..100 {
        assert!(group.try_spawn(async { Ok(()) }).is_ok());
    }
    assert_eq!(group.wait().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn try_spawn_gets_room_once_a_task_ends_and_never_jumps_the_queue() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(1);
    group.spawn(async {
        sleep(10 * MS).await;
        Ok(())
    });
    group.spawn(async { Ok(()) }); // queued behind the first
    assert!(group.try_spawn(async { Ok(()) }).is_err(), "at the limit");
    sleep(20 * MS).await;
    assert!(group.try_spawn(async { Ok(()) }).is_ok(), "room again");
    assert_eq!(group.wait().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn try_spawn_after_a_failure_still_starts_the_task() {
    let mut group = TaskGroup::new(&TaskContext::background()).limit(2);
    group.spawn(async { Err("boom") });
    sleep(MS).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    assert!(
        group
            .try_spawn(async move {
                r.fetch_add(1, SeqCst);
                Ok(())
            })
            .is_ok()
    );
    assert_eq!(group.wait().await, Err("boom"));
    assert_eq!(ran.load(SeqCst), 1);
}

/// Go's `TestGoLimit`, with Go's blocking `Go`: `spawn_wait` holds the
/// producer back, so no more than the limit is ever handed over and not
/// finished — nothing queues without bound.
#[tokio::test(start_paused = true)]
async fn spawn_wait_blocks_at_the_limit_like_gos_go() {
    const LIMIT: usize = 3;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(LIMIT);
    let start = Instant::now();
    for i in 0..30_usize {
        let (active, peak, done) = (active.clone(), peak.clone(), finished.clone());
        within(
            "spawn_wait",
            group.spawn_wait(async move {
                peak.fetch_max(active.fetch_add(1, SeqCst) + 1, SeqCst);
                sleep(MS).await;
                active.fetch_sub(1, SeqCst);
                done.fetch_add(1, SeqCst);
                Ok(())
            }),
        )
        .await;
        let handed = i + 1;
        assert!(
            handed - finished.load(SeqCst) <= LIMIT,
            "{handed} handed over, {} finished",
            finished.load(SeqCst)
        );
    }
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(peak.load(SeqCst), LIMIT);
    assert_eq!(start.elapsed(), 10 * MS, "ten rounds of three");
}

#[tokio::test(start_paused = true)]
async fn spawn_wait_without_a_limit_never_waits() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    for _ in 0..10 {
        assert!(
            futures::poll!(std::pin::pin!(group.spawn_wait(async {
                sleep(Duration::from_secs(1)).await;
                Ok(())
            })))
            .is_ready()
        );
    }
    assert_eq!(group.wait().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn giving_up_on_spawn_wait_drops_the_task_unstarted_and_frees_its_place() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(1);
    group.spawn(async {
        sleep(10 * MS).await;
        Ok(())
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let gave_up = timeout(
        5 * MS,
        group.spawn_wait(async move {
            r.fetch_add(1, SeqCst);
            Ok(())
        }),
    )
    .await;
    assert!(gave_up.is_err(), "still at the limit after 5 ms");
    let start = Instant::now();
    within("spawn_wait", group.spawn_wait(async { Ok(()) })).await;
    assert_eq!(start.elapsed(), 5 * MS, "room when the first task ended");
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(ran.load(SeqCst), 0, "the abandoned task never ran");
}

#[tokio::test(start_paused = true)]
async fn spawn_wait_after_a_failure_still_starts_the_task() {
    let mut group = TaskGroup::new(&TaskContext::background()).limit(1);
    group.spawn(async {
        sleep(MS).await;
        Err("boom")
    });
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let seen = saw_cancel.clone();
    within(
        "spawn_wait",
        group.spawn_wait(async move {
            if TaskContext::current().unwrap().is_cancelled() {
                seen.fetch_add(1, SeqCst);
            }
            Ok(())
        }),
    )
    .await;
    assert_eq!(group.wait().await, Err("boom"));
    assert_eq!(saw_cancel.load(SeqCst), 1);
}

#[test]
#[should_panic(expected = "TaskGroup::try_spawn must be called within a Tokio runtime")]
fn try_spawn_outside_a_runtime_panics_naming_the_operator() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    let _ = group.try_spawn(async { Ok(()) });
}
