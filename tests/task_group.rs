//! TaskGroup (errgroup) guarantees: first error wins and cancels, limits,
//! panics, all-errors mode, and no task outliving the group.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::FutureExt;
use proptest::prelude::*;
use tokio::time::sleep;
use tokio_conc::pool::GroupStopped;
use tokio_conc::prelude::*;

mod common;

use common::{DropCount, alive_tasks, until};

#[tokio::test(start_paused = true)]
async fn the_first_error_in_time_wins_and_cancels_the_others() {
    let mut group = TaskGroup::new(&TaskContext::background());
    let group_ctx = group.context().clone();
    let saw_cancel = Arc::new(AtomicUsize::new(0));

    // Spawned first, fails second.
    group.spawn(async {
        sleep(Duration::from_millis(20)).await;
        Err("late")
    });
    group.spawn(async {
        sleep(Duration::from_millis(10)).await;
        Err("early")
    });
    for _ in 0..3 {
        let saw_cancel = saw_cancel.clone();
        group.spawn(async move {
            let ctx = TaskContext::current().expect("the group's context is current");
            match ctx.run(sleep(Duration::from_secs(60))).await {
                Ok(()) => Ok(()),
                Err(_) => {
                    saw_cancel.fetch_add(1, SeqCst);
                    Err("stopped")
                }
            }
        });
    }

    let started = tokio::time::Instant::now();
    assert_eq!(group.wait().await, Err("early"));
    assert!(group_ctx.is_cancelled());
    assert_eq!(
        saw_cancel.load(SeqCst),
        3,
        "every sibling saw the cancellation"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "siblings stopped at the first error, not after their minute"
    );
}

#[tokio::test(start_paused = true)]
async fn the_groups_context_is_a_child_of_the_parent() {
    let parent = TaskContext::background();
    let mut group = TaskGroup::new(&parent);
    let group_ctx = group.context().clone();
    group.spawn(async { Err(()) });
    assert_eq!(group.wait().await, Err(()));
    assert!(group_ctx.is_cancelled());
    assert!(!parent.is_cancelled(), "a failure never cancels the parent");

    let group: TaskGroup<()> = TaskGroup::new(&parent);
    parent.cancel();
    assert!(
        group.context().is_cancelled(),
        "the parent's cancellation reaches the group"
    );
}

#[tokio::test(start_paused = true)]
async fn success_returns_ok_after_every_task_ends() {
    let done = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::<String>::new(&TaskContext::background());
    for i in 0..5_u64 {
        let done = done.clone();
        group.spawn(async move {
            sleep(Duration::from_millis(10 * i)).await;
            done.fetch_add(1, SeqCst);
            Ok(())
        });
    }
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(done.load(SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn limit_bounds_how_many_tasks_run_at_once() {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(3);
    for i in 0..20_u64 {
        let (now, peak, started) = (now.clone(), peak.clone(), started.clone());
        group.spawn(async move {
            started.fetch_add(1, SeqCst);
            peak.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
            sleep(Duration::from_millis(1 + i % 4)).await;
            now.fetch_sub(1, SeqCst);
            Ok(())
        });
    }
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(started.load(SeqCst), 20);
    assert_eq!(peak.load(SeqCst), 3, "three ran together, never more");
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_queued_tasks_still_start_and_see_the_cancelled_context() {
    let started = Arc::new(AtomicUsize::new(0));
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&TaskContext::background()).limit(1);
    for i in 0..5 {
        let (started, saw_cancel) = (started.clone(), saw_cancel.clone());
        group.spawn(async move {
            started.fetch_add(1, SeqCst);
            let ctx = TaskContext::current().unwrap();
            if ctx.is_cancelled() {
                saw_cancel.fetch_add(1, SeqCst);
            }
            sleep(Duration::from_millis(5)).await;
            if i == 1 { Err(i) } else { Ok(()) }
        });
    }
    assert_eq!(group.wait_all().await, vec![1]);
    assert_eq!(started.load(SeqCst), 5, "every task was started");
    assert_eq!(
        saw_cancel.load(SeqCst),
        3,
        "tasks 2..5 started after the failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_resumed_by_wait_and_cancels_the_group() {
    let mut group = TaskGroup::new(&TaskContext::background());
    let group_ctx = group.context().clone();
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    group.spawn(async {
        sleep(Duration::from_millis(5)).await;
        Err("an ordinary error, later")
    });
    let seen = saw_cancel.clone();
    group.spawn(async move {
        TaskContext::current().unwrap().cancelled().await;
        seen.fetch_add(1, SeqCst);
        Ok(())
    });
    group.spawn(async {
        sleep(Duration::from_millis(1)).await;
        let index = 3;
        panic!("task {index} broke")
    });

    let payload = AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("task 3 broke")
    );
    assert!(group_ctx.is_cancelled());
    assert_eq!(
        saw_cancel.load(SeqCst),
        1,
        "the panic cancelled the siblings"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_all_resumes_a_panic_too() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).keep_going();
    group.spawn(async { panic!("boom") });
    let payload = AssertUnwindSafe(group.wait_all())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
}

#[tokio::test(start_paused = true)]
async fn keep_going_runs_every_task_and_collects_every_error() {
    let finished = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    let group_ctx = group.context().clone();
    for i in 0..6_u64 {
        let finished = finished.clone();
        group.spawn(async move {
            sleep(Duration::from_millis(60 - 10 * i)).await;
            finished.fetch_add(1, SeqCst);
            if i % 2 == 0 { Err(i) } else { Ok(()) }
        });
    }
    let probe = group_ctx.clone();
    let errors = group.wait_all().await;
    assert_eq!(errors, vec![4, 2, 0], "in the order they happened");
    assert_eq!(finished.load(SeqCst), 6);
    assert!(probe.is_cancelled(), "cancelled once waited, as in Go");
}

#[tokio::test(start_paused = true)]
async fn errors_do_not_cancel_in_keep_going_mode() {
    let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    let group_ctx = group.context().clone();
    group.spawn(async { Err("first") });
    let ctx = group_ctx.clone();
    group.spawn(async move {
        sleep(Duration::from_millis(10)).await;
        assert!(
            !ctx.is_cancelled(),
            "an error does not cancel in keep_going mode"
        );
        Err("second")
    });
    assert_eq!(group.wait().await, Err("first"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_group_aborts_its_tasks() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(2);
    let group_ctx = group.context().clone();
    for _ in 0..5 {
        let guard = DropCount(dropped.clone());
        group.spawn(async move {
            let _guard = guard;
            std::future::pending().await
        });
    }
    tokio::task::yield_now().await;
    assert_eq!(alive_tasks(), baseline + 5);
    drop(group);
    assert!(group_ctx.is_cancelled());
    until("the tasks are gone", || alive_tasks() == baseline).await;
    assert_eq!(
        dropped.load(SeqCst),
        5,
        "running and queued futures were all dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn giving_up_on_wait_aborts_the_tasks() {
    let baseline = alive_tasks();
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    for _ in 0..3 {
        group.spawn(std::future::pending());
    }
    let waited = tokio::time::timeout(Duration::from_secs(1), group.wait()).await;
    assert!(waited.is_err());
    until("the tasks are gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn tasks_see_the_groups_values() {
    let ctx = TaskContext::background().with_value("request-9");
    let mut group = TaskGroup::new(&ctx);
    group.spawn(async {
        let ctx = TaskContext::current().unwrap();
        match ctx.value::<&str>() {
            Some(&"request-9") => Ok(()),
            other => Err(format!("saw {other:?}")),
        }
    });
    assert_eq!(group.wait().await, Ok(()));
}

#[test]
#[should_panic(expected = "`limit` must be at least 1, got 0")]
fn zero_limit_panics_naming_the_argument() {
    let _ = TaskGroup::<()>::new(&TaskContext::background()).limit(0);
}

#[test]
#[should_panic(expected = "TaskGroup::spawn must be called within a Tokio runtime")]
fn spawning_outside_a_runtime_panics_naming_the_operator() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    group.spawn(async { Ok(()) });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For any set of task outcomes and delays: fail-fast `wait` returns the
    /// error that happened first; `keep_going` + `wait_all` returns every
    /// error; a limit is never exceeded.
    #[test]
    fn first_error_and_all_errors_match_the_model(
        tasks in proptest::collection::vec((1_u64..50, any::<bool>()), 0..20),
        limit in 1_usize..6,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            // Distinct delays so "first in time" is well defined.
            let tasks: Vec<(u64, bool)> = tasks
                .iter()
                .enumerate()
                .map(|(i, &(delay, fails))| (delay * 100 + i as u64, fails))
                .collect();
            let failing = |&(delay, fails): &(u64, bool)| fails.then_some(delay);

            let mut group = TaskGroup::new(&TaskContext::background());
            for &(delay, fails) in &tasks {
                group.spawn(async move {
                    sleep(Duration::from_millis(delay)).await;
                    if fails { Err(delay) } else { Ok(()) }
                });
            }
            let first = tasks.iter().filter_map(failing).min();
            assert_eq!(group.wait().await.err(), first);

            let now = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let mut group = TaskGroup::new(&TaskContext::background()).keep_going().limit(limit);
            for &(delay, fails) in &tasks {
                let (now, peak) = (now.clone(), peak.clone());
                group.spawn(async move {
                    peak.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                    sleep(Duration::from_millis(delay)).await;
                    now.fetch_sub(1, SeqCst);
                    if fails { Err(delay) } else { Ok(()) }
                });
            }
            let mut errors = group.wait_all().await;
            errors.sort_unstable();
            let mut expected: Vec<u64> = tasks.iter().filter_map(failing).collect();
            expected.sort_unstable();
            assert_eq!(errors, expected);
            assert!(peak.load(SeqCst) <= limit);
        });
    }
}

#[tokio::test]
async fn the_group_and_its_wait_can_move_between_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    let mut group = TaskGroup::<String>::new(&TaskContext::background());
    group.spawn(async { Ok(()) });
    let waited = tokio::spawn(async move { group.wait().await });
    assert_eq!(waited.await.unwrap(), Ok(()));
    let group = TaskGroup::<String>::new(&TaskContext::background());
    assert_send(&group.wait_all());
}

/// Behind a limit, tasks start in spawn order on a multi-thread runtime too,
/// where the runtime polls a task spawned from a worker thread first (its
/// LIFO slot) and other threads steal: the order is the group's, not the
/// scheduler's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_starts_tasks_in_spawn_order() {
    for _ in 0..20 {
        // Spawned from a runtime task, as a service does.
        let order = tokio::spawn(async {
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut group = TaskGroup::<()>::new(&TaskContext::background()).limit(1);
            for i in 0..20 {
                let order = order.clone();
                group.spawn(async move {
                    order.lock().unwrap().push(i);
                    Ok(())
                });
            }
            group.wait().await.unwrap();
            order.lock().unwrap().clone()
        })
        .await
        .unwrap();
        assert_eq!(order, (0..20).collect::<Vec<_>>());
    }
}

/// A long-lived group (a server's, spawning a task per request) lets go of
/// the tasks that have ended instead of holding every one it ever ran until
/// `wait`: its memory stays bounded by the tasks still running.
#[tokio::test(start_paused = true)]
async fn a_long_lived_group_lets_go_of_ended_tasks() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    for _ in 0..1000 {
        group.spawn(async { Ok(()) });
        tokio::task::yield_now().await;
    }
    let shown = format!("{group:?}");
    let held: usize = shown
        .split("tasks: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("Debug shows the tasks held");
    assert!(held <= 2, "the group holds {held} tasks: {shown}");
    assert_eq!(group.wait().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn the_first_panic_in_time_is_the_one_resumed() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background()).keep_going();
    group.spawn(async {
        sleep(Duration::from_millis(20)).await;
        panic!("second")
    });
    group.spawn(async {
        sleep(Duration::from_millis(10)).await;
        panic!("first")
    });
    let payload = AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"first"));
}

/// A task future (hand-written, not an `async` block) that fails and then
/// panics when dropped.
struct FailsThenPanicsWhenDropped;

impl std::future::Future for FailsThenPanicsWhenDropped {
    type Output = Result<(), &'static str>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Err("failed"))
    }
}

impl Drop for FailsThenPanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropping the task broke");
    }
}

/// A panic while dropping a task's future is that task's panic like any
/// other: it cancels the group, and `wait` resumes it once every task has
/// ended (it did so at once, aborting the siblings unseen).
#[tokio::test(start_paused = true)]
async fn a_task_panicking_in_drop_is_resumed_after_the_others_end() {
    let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let seen = saw_cancel.clone();
    group.spawn(async move {
        TaskContext::current().unwrap().cancelled().await;
        seen.fetch_add(1, SeqCst);
        Ok(())
    });
    group.spawn(FailsThenPanicsWhenDropped);
    let payload = AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"dropping the task broke")
    );
    assert_eq!(
        saw_cancel.load(SeqCst),
        1,
        "the sibling saw the cancellation and ended"
    );
}

/// The cause a sibling reads from the group's context when it is woken.
fn stopped_by(ctx: &TaskContext) -> Option<GroupStopped> {
    let err = ctx.err().expect("the group's context is cancelled");
    err.cause()?.downcast_ref::<GroupStopped>().copied()
}

/// Like Go's `context.Cause` under errgroup: a sibling woken by a failure
/// reads why from the context, and a plain `Cancelled` would fail this.
#[tokio::test(start_paused = true)]
async fn a_failure_cancels_the_groups_context_with_a_cause_saying_so() {
    let mut group = TaskGroup::new(&TaskContext::background());
    let group_ctx = group.context().clone();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    group.spawn(async move {
        let ctx = TaskContext::current().unwrap();
        ctx.cancelled().await;
        *s.lock().unwrap() = Some(stopped_by(&ctx));
        Ok(())
    });
    group.spawn(async {
        sleep(Duration::from_millis(5)).await;
        Err("disk full")
    });
    let waited = tokio::time::timeout(Duration::from_secs(600), group.wait()).await;
    assert_eq!(waited.expect("wait hung"), Err("disk full"));
    assert_eq!(
        *seen.lock().unwrap(),
        Some(Some(GroupStopped::TaskFailed)),
        "the woken sibling read the cause"
    );
    let err = group_ctx.err().unwrap();
    assert_eq!(
        err.to_string(),
        "context cancelled: a task in the group failed"
    );
    assert_ne!(err, ContextError::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_panic_cancels_the_groups_context_with_a_cause_saying_so() {
    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    let group_ctx = group.context().clone();
    group.spawn(async { panic!("boom") });
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        AssertUnwindSafe(group.wait()).catch_unwind(),
    )
    .await;
    assert!(waited.expect("wait hung").is_err(), "the panic is resumed");
    assert_eq!(stopped_by(&group_ctx), Some(GroupStopped::TaskPanicked));
    assert_eq!(
        group_ctx.err().unwrap().to_string(),
        "context cancelled: a task in the group panicked"
    );
}

/// The cause only ever names a task of the group: a parent's cancellation,
/// a `wait` that ends well, a dropped group and `keep_going` errors say
/// nothing of the sort.
#[tokio::test(start_paused = true)]
async fn a_group_no_task_stopped_reports_no_such_cause() {
    let parent = TaskContext::background();
    let group = TaskGroup::<()>::new(&parent);
    parent.cancel_with(std::io::Error::other("shutting down"));
    let err = group.context().err().unwrap();
    assert_eq!(err.to_string(), "context cancelled: shutting down");
    assert_eq!(stopped_by(group.context()), None);

    let mut group = TaskGroup::<()>::new(&TaskContext::background());
    let ctx = group.context().clone();
    group.spawn(async { Ok(()) });
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));

    let group = TaskGroup::<()>::new(&TaskContext::background());
    let ctx = group.context().clone();
    drop(group);
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));

    let mut group = TaskGroup::new(&TaskContext::background()).keep_going();
    let ctx = group.context().clone();
    group.spawn(async { Err(1) });
    assert_eq!(group.wait_all().await, vec![1]);
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
}
