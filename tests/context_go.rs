//! Go's own context tests (`context_test.go`, `x_test.go`) for the calls this
//! crate added after the core: `WithoutCancel`, `AfterFunc`,
//! `WithDeadlineCause`/`WithTimeoutCause` and `Cause` — plus lazy deadlines
//! (no task per deadline) checked against a model of eager timers, and
//! context-bound waits on Tokio's primitives. All on paused time.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_conc::context::{ContextError, TaskContext};

mod common;
use common::{alive_tasks, until, yield_times};

const MS: Duration = Duration::from_millis(1);

/// Lets spawned tasks (aborted ones included) finish being torn down.
async fn settle() {
    yield_times(10).await;
}

fn cause_text(err: Option<ContextError>) -> Option<String> {
    err.map(|e| match e.cause() {
        Some(cause) => format!("cause: {cause}"),
        None => e.to_string(),
    })
}

fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    (calls, move || {
        seen.fetch_add(1, SeqCst);
    })
}

// ---------------------------------------------------------------- WithoutCancel

#[derive(Debug, PartialEq)]
struct RequestId(u32);

#[tokio::test(start_paused = true)]
async fn without_cancel_keeps_values_and_is_never_cancelled_by_the_parent() {
    let parent = TaskContext::background()
        .with_value(RequestId(7))
        .with_timeout(100 * MS);
    let detached = parent.without_cancel();
    let token = detached.token();
    assert_eq!(detached.value::<RequestId>(), Some(&RequestId(7)));
    assert_eq!(detached.deadline(), None, "no deadline from the parent");

    parent.cancel_with(io::Error::other("request done"));
    sleep(Duration::from_secs(1)).await;
    assert!(parent.is_cancelled());
    assert!(!detached.is_cancelled());
    assert_eq!(detached.err(), None);
    assert_eq!(detached.cause(), None);
    assert!(
        !token.is_cancelled(),
        "its token never fires from the parent"
    );
    let still_live = timeout(Duration::from_secs(5), detached.cancelled()).await;
    assert!(still_live.is_err(), "cancelled() does not complete either");
}

#[tokio::test(start_paused = true)]
async fn without_cancel_ignores_a_parent_deadline_that_passed_unobserved() {
    let parent = TaskContext::background().with_timeout(10 * MS);
    let detached = parent.without_cancel().child();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(detached.err(), None);
    assert_eq!(parent.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn the_err_walk_stops_at_a_without_cancel_node() {
    let parent = TaskContext::background();
    parent.cancel_with(io::Error::other("parent's cause"));
    let detached = parent.without_cancel();
    let below = detached.child().with_value(1_u8);
    assert_eq!(below.err(), None, "born under a cancelled parent, yet live");

    detached.cancel();
    assert_eq!(detached.err(), Some(ContextError::Cancelled));
    assert_eq!(
        below.err(),
        Some(ContextError::Cancelled),
        "its own stop, never the parent's cause"
    );
    assert_eq!(below.cause(), Some(ContextError::Cancelled));

    let other = parent.without_cancel();
    other.cancel_with(io::Error::other("audit failed"));
    assert_eq!(
        cause_text(other.child().cause()).as_deref(),
        Some("cause: audit failed")
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_under_without_cancel_works_and_spares_the_parent() {
    let parent = TaskContext::background().with_timeout(Duration::from_secs(60));
    let detached = parent.without_cancel();
    let audit = detached.with_timeout(Duration::from_secs(120));
    assert_eq!(
        audit.deadline(),
        Some(Instant::now() + Duration::from_secs(120))
    );
    audit.cancelled().await;
    assert_eq!(audit.err(), Some(ContextError::DeadlineExceeded));
    assert!(!detached.is_cancelled());
}

#[tokio::test]
async fn without_cancel_logs_the_parents_span_values() {
    struct Tenant(&'static str);
    impl std::fmt::Display for Tenant {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl tokio_conc::context::SpanValue for Tenant {
        const FIELD: &'static str = "tenant";
    }
    let parent = TaskContext::background().with_span_value(Tenant("acme"));
    assert_eq!(parent.without_cancel().span_fields(), "tenant=acme");
}

// ---------------------------------------------------------------- AfterFunc

#[tokio::test(start_paused = true)]
async fn after_cancel_runs_once_after_cancel_and_then_stop_says_false() {
    let ctx = TaskContext::background();
    let (calls, f) = counter();
    let guard = ctx.after_cancel(f);
    settle().await;
    assert_eq!(calls.load(SeqCst), 0, "not before the context stops");
    ctx.cancel();
    ctx.cancel();
    until("the function", || calls.load(SeqCst) == 1).await;
    settle().await;
    assert_eq!(calls.load(SeqCst), 1, "once");
    assert!(!guard.stop(), "it already ran");
}

#[tokio::test(start_paused = true)]
async fn after_cancel_runs_at_the_deadline() {
    let start = Instant::now();
    let ctx = TaskContext::background().with_timeout(250 * MS);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _guard = ctx.after_cancel(move || {
        let _ = tx.send(Instant::now());
    });
    let ran_at = timeout(Duration::from_secs(60), rx)
        .await
        .expect("after_cancel at the deadline hung")
        .unwrap();
    assert_eq!(ran_at - start, 250 * MS);
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn after_cancel_runs_at_an_inherited_deadline_and_on_an_ancestors_cancel() {
    let parent = TaskContext::background().with_timeout(100 * MS);
    let child = parent.child().with_value(1_u8);
    let (calls, f) = counter();
    let _guard = child.after_cancel(f);
    sleep(100 * MS).await;
    until("the function at the inherited deadline", || {
        calls.load(SeqCst) == 1
    })
    .await;

    let root = TaskContext::background();
    let grandchild = root.child().child();
    let (calls, f) = counter();
    let _guard = grandchild.after_cancel(f);
    root.cancel();
    until("the function after an ancestor's cancel", || {
        calls.load(SeqCst) == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn after_cancel_on_a_stopped_context_runs_at_once() {
    let ctx = TaskContext::background();
    ctx.cancel();
    let (calls, f) = counter();
    let guard = ctx.after_cancel(f);
    until("the function", || calls.load(SeqCst) == 1).await;
    assert!(!guard.stop());
}

#[tokio::test(start_paused = true)]
async fn stop_prevents_the_call_once_and_ends_the_task() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background();
    let (calls, f) = counter();
    let guard = ctx.after_cancel(f);
    assert_eq!(alive_tasks(), baseline + 1);
    assert!(guard.stop(), "prevented the call");
    assert!(!guard.stop(), "already stopped");
    settle().await;
    assert_eq!(alive_tasks(), baseline, "the task ended with stop");
    ctx.cancel();
    settle().await;
    assert_eq!(calls.load(SeqCst), 0, "never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_cancel_runs_on_its_own_task_not_inside_cancel() {
    let ctx = TaskContext::background();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let _guard = ctx.after_cancel(move || {
        // Blocks until the test lets it go: cancel() must not wait for it.
        blocked.recv().unwrap();
        let _ = done_tx.send(());
    });
    ctx.cancel();
    assert!(ctx.is_cancelled(), "cancel returned while f is blocked");
    release.send(()).unwrap();
    timeout(Duration::from_secs(60), done_rx)
        .await
        .expect("after_cancel hung")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_the_guard_keeps_the_registration() {
    let ctx = TaskContext::background();
    let (calls, f) = counter();
    drop(ctx.after_cancel(f));
    ctx.cancel();
    until("the function", || calls.load(SeqCst) == 1).await;
}

#[tokio::test(start_paused = true)]
async fn no_task_is_left_when_the_context_is_dropped_uncancelled() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(60));
    let child = ctx.child();
    let (calls, f) = counter();
    drop(ctx.after_cancel(f));
    let (child_calls, g) = counter();
    let _kept_guard = child.after_cancel(g);
    assert_eq!(alive_tasks(), baseline + 2);

    drop(ctx);
    settle().await;
    assert_eq!(
        alive_tasks(),
        baseline + 2,
        "the child still holds its parent"
    );
    drop(child);
    settle().await;
    assert_eq!(alive_tasks(), baseline, "no task outlives the contexts");
    sleep(Duration::from_secs(120)).await;
    assert_eq!(calls.load(SeqCst) + child_calls.load(SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn after_cancel_on_without_cancel_ignores_the_parent() {
    let parent = TaskContext::background();
    let detached = parent.without_cancel();
    let (calls, f) = counter();
    let _guard = detached.after_cancel(f);
    parent.cancel();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(SeqCst), 0);
    detached.cancel();
    until("the function", || calls.load(SeqCst) == 1).await;
}

// ---------------------------------------------------------------- Cause

#[derive(Debug)]
struct Named(&'static str);
impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Named {}

/// Go's `TestCause` table, case by case: (err, cause) as text.
#[tokio::test(start_paused = true)]
async fn cause_matches_gos_table() {
    type Case = (
        &'static str,
        TaskContext,
        Option<&'static str>,
        Option<&'static str>,
    );
    let never = Duration::from_secs(3600);
    let bg = TaskContext::background;
    let mut cases: Vec<Case> = Vec::new();

    cases.push(("Background", bg(), None, None));

    let ctx = bg().child();
    ctx.cancel();
    cases.push((
        "WithCancel",
        ctx,
        Some("context cancelled"),
        Some("context cancelled"),
    ));

    let ctx = bg().child();
    ctx.cancel_with(Named("cause"));
    cases.push((
        "WithCancelCause",
        ctx,
        Some("cause: cause"),
        Some("cause: cause"),
    ));

    let parent = bg().child();
    let child = parent.child();
    parent.cancel_with(Named("parentCause"));
    child.cancel_with(Named("childCause"));
    cases.push((
        "parent cause before child",
        child,
        Some("cause: parentCause"),
        Some("cause: parentCause"),
    ));

    let parent = bg().child();
    let child = parent.child();
    child.cancel_with(Named("childCause"));
    parent.cancel_with(Named("parentCause"));
    cases.push((
        "parent cause after child",
        child,
        Some("cause: childCause"),
        Some("cause: childCause"),
    ));

    let parent = bg().child();
    let child = parent.child();
    parent.cancel_with(Named("parentCause"));
    child.cancel();
    cases.push((
        "parent cause before nil",
        child,
        Some("cause: parentCause"),
        Some("cause: parentCause"),
    ));

    let parent = bg().child();
    let child = parent.child();
    child.cancel();
    parent.cancel_with(Named("parentCause"));
    cases.push((
        "parent cause after nil",
        child,
        Some("context cancelled"),
        Some("context cancelled"),
    ));

    let parent = bg().child();
    let child = parent.with_timeout(never);
    parent.cancel_with(Named("parentCause"));
    cases.push((
        "parent cause, child deadline",
        child,
        Some("cause: parentCause"),
        Some("cause: parentCause"),
    ));

    let parent = bg().child();
    let child = parent.with_deadline(Instant::now());
    parent.cancel_with(Named("parentCause"));
    cases.push((
        "parent cause, child deadline already passed",
        child,
        Some("context deadline exceeded"),
        Some("context deadline exceeded"),
    ));

    cases.push((
        "WithTimeout",
        bg().with_timeout(Duration::ZERO),
        Some("context deadline exceeded"),
        Some("context deadline exceeded"),
    ));

    let ctx = bg().with_timeout(never);
    ctx.cancel();
    cases.push((
        "WithTimeout canceled",
        ctx,
        Some("context cancelled"),
        Some("context cancelled"),
    ));

    cases.push((
        "WithTimeoutCause",
        bg().with_timeout_cause(Duration::ZERO, Named("tooSlow")),
        Some("context deadline exceeded"),
        Some("cause: tooSlow"),
    ));

    let ctx = bg().with_timeout_cause(never, Named("tooSlow"));
    ctx.cancel();
    cases.push((
        "WithTimeoutCause canceled",
        ctx,
        Some("context cancelled"),
        Some("context cancelled"),
    ));

    let parent = bg().child();
    let ctx = parent.with_timeout_cause(Duration::ZERO, Named("finishedEarly"));
    parent.cancel_with(Named("tooSlow"));
    cases.push((
        "WithTimeoutCause stacked",
        ctx,
        Some("context deadline exceeded"),
        Some("cause: finishedEarly"),
    ));

    let parent = bg().child();
    parent.cancel_with(Named("finishedEarly"));
    let ctx = parent.with_timeout_cause(Duration::ZERO, Named("tooSlow"));
    cases.push((
        "WithTimeoutCause stacked canceled",
        ctx,
        Some("cause: finishedEarly"),
        Some("cause: finishedEarly"),
    ));

    cases.push(("WithoutCancel", bg().without_cancel(), None, None));

    let parent = bg().child();
    parent.cancel_with(Named("finishedEarly"));
    cases.push((
        "WithoutCancel canceled",
        parent.without_cancel(),
        None,
        None,
    ));

    let parent = bg().with_timeout_cause(Duration::ZERO, Named("tooSlow"));
    cases.push(("WithoutCancel timeout", parent.without_cancel(), None, None));

    for (name, ctx, err, cause) in cases {
        let err_text = ctx.err().map(|e| match e.cause() {
            Some(c) => format!("cause: {c}"),
            None => e.to_string(),
        });
        assert_eq!(err_text.as_deref(), err, "{name}: err");
        assert_eq!(cause_text(ctx.cause()).as_deref(), cause, "{name}: cause");
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_cause_reaches_every_depth_and_err_says_deadline() {
    let ctx = TaskContext::background()
        .with_deadline_cause(Instant::now() + 100 * MS, Named("upstream too slow"));
    let deep = ctx
        .child()
        .with_value(1_u8)
        .child()
        .with_timeout(Duration::from_secs(5));
    deep.cancelled().await;
    for node in [&ctx, &deep] {
        assert_eq!(node.err(), Some(ContextError::DeadlineExceeded));
        assert_eq!(
            cause_text(node.cause()).as_deref(),
            Some("cause: upstream too slow")
        );
    }
    // One cause object, shared by every descendant.
    assert_eq!(ctx.cause(), deep.cause());
}

#[tokio::test(start_paused = true)]
async fn a_parents_cancel_cause_reaches_every_depth() {
    let root = TaskContext::background();
    let mut node = root.clone();
    for depth in 0..10 {
        node = match depth % 3 {
            0 => node.child(),
            1 => node.with_value(depth),
            _ => node.with_timeout(Duration::from_secs(60)),
        };
    }
    root.cancel_with(Named("shutting down"));
    assert_eq!(node.err(), root.err());
    assert_eq!(node.cause(), root.cause());
    assert_eq!(
        cause_text(node.cause()).as_deref(),
        Some("cause: shutting down")
    );
}

#[tokio::test(start_paused = true)]
async fn an_earlier_parent_deadline_keeps_its_own_cause() {
    let parent = TaskContext::background().with_timeout_cause(100 * MS, Named("parent's"));
    let child = parent.with_timeout_cause(Duration::from_secs(1), Named("child's"));
    child.cancelled().await;
    assert_eq!(
        cause_text(child.cause()).as_deref(),
        Some("cause: parent's")
    );
}

// ---------------------------------------------------------------- lazy deadlines

#[tokio::test(start_paused = true)]
async fn a_lazy_deadline_fires_exactly_at_the_deadline() {
    let start = Instant::now();
    let ctx = TaskContext::background().with_timeout(250 * MS);
    sleep_until(start + 249 * MS).await;
    assert!(!ctx.is_cancelled());
    assert_eq!(ctx.err(), None);
    sleep_until(start + 250 * MS).await;
    assert!(ctx.is_cancelled(), "at the deadline, as Go's timers");
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_childs_token_fires_at_the_parents_deadline() {
    let start = Instant::now();
    let parent = TaskContext::background().with_timeout(300 * MS);
    let child = parent.child().with_value("v");
    let token = child.token();
    timeout(Duration::from_secs(60), token.cancelled())
        .await
        .expect("the token hung");
    assert_eq!(start.elapsed(), 300 * MS);
    assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_nobody_watched_still_comes_before_a_later_cancel() {
    // The deadline passes at 100 ms with nobody looking; the root is
    // cancelled at 200 ms. An eager timer would have stopped the child
    // first, so its reason is the deadline.
    let root = TaskContext::background();
    let child = root.with_timeout_cause(100 * MS, Named("slow"));
    let grandchild = child.child();
    sleep(200 * MS).await;
    root.cancel_with(Named("shutdown"));
    assert_eq!(grandchild.err(), Some(ContextError::DeadlineExceeded));
    assert_eq!(
        cause_text(grandchild.cause()).as_deref(),
        Some("cause: slow")
    );
    assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
    assert_eq!(cause_text(root.err()).as_deref(), Some("cause: shutdown"));

    // And a cancel before the deadline wins over it, however late one looks.
    let root = TaskContext::background();
    let child = root.with_timeout(100 * MS);
    sleep(50 * MS).await;
    root.cancel();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(child.err(), Some(ContextError::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn cancelling_after_an_unwatched_deadline_keeps_the_deadline() {
    let ctx = TaskContext::background().with_timeout(10 * MS);
    sleep(20 * MS).await;
    ctx.cancel_with(Named("too late"));
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
}

// A random tree of contexts (children, values, timeouts with and without a
// cause, without_cancel) and random cancellations and looks, on paused time:
// every look sees what eager timers would show, though no deadline has a timer.
#[derive(Clone, Debug)]
enum Kind {
    Child,
    Value,
    Timeout(u64, bool),
    Detached,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Child),
        Just(Kind::Value),
        (0_u64..30, any::<bool>()).prop_map(|(k, c)| Kind::Timeout(k, c)),
        Just(Kind::Detached),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Why {
    Cancel(usize),
    Deadline(Option<usize>),
}

fn model(
    n: usize,
    parent_of: &[Option<usize>],
    kinds: &[Kind],
    cancels: &[(u64, usize)],
) -> Option<(u64, Why)> {
    let mut best: Option<(u64, Why)> = cancels
        .iter()
        .filter(|(_, node)| *node == n)
        .map(|(t, _)| (*t, Why::Cancel(n * 1000 + *t as usize)))
        .min_by_key(|(t, _)| *t);
    let mut consider = |candidate: Option<(u64, Why)>| {
        if let Some((t, why)) = candidate {
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, why));
            }
        }
    };
    if let Kind::Timeout(k, with_cause) = kinds[n] {
        consider(Some((10 * k + 3, Why::Deadline(with_cause.then_some(n)))));
    }
    if !matches!(kinds[n], Kind::Detached) {
        if let Some(p) = parent_of[n] {
            consider(model(p, parent_of, kinds, cancels));
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn lazy_deadlines_read_as_eager_timers(
        tree in prop::collection::vec((any::<prop::sample::Index>(), kind()), 1..20),
        cancels in prop::collection::vec((0_u64..30, any::<prop::sample::Index>()), 0..10),
        looks in prop::collection::vec((0_u64..30, any::<prop::sample::Index>()), 0..20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let mut nodes = vec![TaskContext::background()];
            let mut parent_of = vec![None];
            let mut kinds = vec![Kind::Child];
            for (p, kind) in &tree {
                let parent = p.index(nodes.len());
                let base = &nodes[parent];
                let n = nodes.len();
                let node = match kind {
                    Kind::Child => base.child(),
                    Kind::Value => base.with_value(n),
                    Kind::Timeout(k, false) => base.with_timeout(Duration::from_millis(10 * k + 3)),
                    Kind::Timeout(k, true) => base.with_timeout_cause(
                        Duration::from_millis(10 * k + 3),
                        io::Error::other(format!("deadline {n}")),
                    ),
                    Kind::Detached => base.without_cancel(),
                };
                // A timeout later than an inherited deadline is no deadline of its own.
                let kind = match kind {
                    Kind::Timeout(k, _) if base.deadline().is_some_and(|d| d <= start + Duration::from_millis(10 * k + 3)) => Kind::Child,
                    other => other.clone(),
                };
                nodes.push(node);
                parent_of.push(Some(parent));
                kinds.push(kind);
            }
            // One cancellation per instant: simultaneous ones have no order.
            let mut cancels: Vec<(u64, usize)> = cancels
                .iter()
                .map(|(k, i)| (10 * k + 6, i.index(nodes.len())))
                .collect();
            cancels.sort_by_key(|&(t, _)| t);
            cancels.dedup_by_key(|&mut (t, _)| t);
            let looks: Vec<(u64, usize)> = looks
                .iter()
                .map(|(k, i)| (10 * k + 8, i.index(nodes.len())))
                .collect();
            // Events in time order; the last look at 400 ms covers every node.
            let mut events: Vec<(u64, bool, usize)> = cancels
                .iter()
                .map(|&(t, n)| (t, true, n))
                .chain(looks.iter().map(|&(t, n)| (t, false, n)))
                .chain((0..nodes.len()).map(|n| (400, false, n)))
                .collect();
            events.sort_by_key(|&(t, _, _)| t);
            for (t, is_cancel, n) in events {
                sleep_until(start + Duration::from_millis(t)).await;
                if is_cancel {
                    nodes[n].cancel_with(io::Error::other(format!("cancel {}", n * 1000 + t as usize)));
                    continue;
                }
                let expected = model(n, &parent_of, &kinds, &cancels)
                    .filter(|(at, _)| *at <= t);
                let (err, cause) = match expected {
                    None => (None, None),
                    Some((_, Why::Cancel(id))) => {
                        let text = format!("cause: cancel {id}");
                        (Some(text.clone()), Some(text))
                    }
                    Some((_, Why::Deadline(owner))) => (
                        Some("context deadline exceeded".to_string()),
                        Some(match owner {
                            Some(o) => format!("cause: deadline {o}"),
                            None => "context deadline exceeded".to_string(),
                        }),
                    ),
                };
                prop_assert_eq!(cause_text(nodes[n].err()), err, "err of node {} at {} ms", n, t);
                prop_assert_eq!(cause_text(nodes[n].cause()), cause, "cause of node {} at {} ms", n, t);
                prop_assert_eq!(nodes[n].is_cancelled(), expected.is_some());
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------- waiting on Tokio's primitives

#[tokio::test(start_paused = true)]
async fn a_semaphore_wait_bound_by_a_context_gives_up_its_place() {
    let sem = Arc::new(Semaphore::new(1));
    let held = Arc::clone(&sem).acquire_owned().await.unwrap();
    let start = Instant::now();

    let ctx = TaskContext::background().with_timeout(50 * MS);
    let gave_up = ctx.run(sem.acquire()).await;
    assert!(matches!(gave_up, Err(ContextError::DeadlineExceeded)));
    assert_eq!(start.elapsed(), 50 * MS);

    // A waiter queued behind a cancelled one gets the permit: none was lost.
    let sem2 = Arc::clone(&sem);
    let patient = tokio::spawn(async move {
        let cancelled_ctx = TaskContext::background();
        let waiter = cancelled_ctx.clone();
        let first = tokio::spawn({
            let sem = Arc::clone(&sem2);
            async move { waiter.run(sem.acquire_owned()).await.map(drop) }
        });
        tokio::task::yield_now().await;
        cancelled_ctx.cancel();
        assert_eq!(first.await.unwrap(), Err(ContextError::Cancelled));
        sem2.acquire_owned().await.unwrap()
    });
    sleep(100 * MS).await;
    drop(held);
    let permit = timeout(Duration::from_secs(60), patient)
        .await
        .expect("the patient waiter hung")
        .unwrap();
    drop(permit);
    assert_eq!(sem.available_permits(), 1, "no permit leaked");
}

#[tokio::test(start_paused = true)]
async fn an_mpsc_receive_bound_by_a_context_loses_no_message() {
    let (tx, mut rx) = mpsc::channel::<u32>(4);
    let ctx = TaskContext::background().with_timeout(100 * MS);
    assert_eq!(
        ctx.run(rx.recv()).await,
        Err(ContextError::DeadlineExceeded)
    );
    tx.send(7).await.unwrap();
    let later = TaskContext::background();
    assert_eq!(later.run(rx.recv()).await, Ok(Some(7)));
}

#[tokio::test(start_paused = true)]
async fn a_sleep_bound_by_a_context_ends_when_it_is_cancelled() {
    let ctx = TaskContext::background();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        canceller.cancel_with(Named("stop"));
    });
    let start = Instant::now();
    let slept = ctx.run(sleep(Duration::from_secs(3600))).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(cause_text(slept.err()).as_deref(), Some("cause: stop"));
}
