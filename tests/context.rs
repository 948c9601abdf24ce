//! The guarantees of `TaskContext`, each with a test that fails if it breaks.

use std::io;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tokio_conc::context::{ContextError, TaskContext};
use tokio_util::sync::CancellationToken;

mod common;

use common::alive_tasks;

/// Lets spawned tasks (timers being aborted) finish being torn down.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn earlier_parent_deadline_wins() {
    let start = Instant::now();
    let parent = TaskContext::background().with_timeout(Duration::from_secs(1));
    let child = parent.with_timeout(Duration::from_secs(10));
    assert_eq!(child.deadline(), Some(start + Duration::from_secs(1)));
    child.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
    assert_eq!(parent.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn earlier_child_deadline_wins_and_spares_the_parent() {
    let start = Instant::now();
    let parent = TaskContext::background().with_timeout(Duration::from_secs(10));
    let child = parent.with_timeout(Duration::from_secs(1));
    assert_eq!(child.deadline(), Some(start + Duration::from_secs(1)));
    child.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
    assert!(!parent.is_cancelled());
    assert_eq!(parent.err(), None);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_inherited_by_children_and_values() {
    let parent = TaskContext::background().with_timeout(Duration::from_secs(3));
    let grandchild = parent.child().with_value(1_u8).child();
    assert_eq!(grandchild.deadline(), parent.deadline());
    grandchild.cancelled().await;
    assert_eq!(grandchild.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn token_fires_at_the_deadline_not_before() {
    let start = Instant::now();
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(250));
    let token = ctx.token();
    tokio::time::sleep(Duration::from_millis(249)).await;
    assert!(!token.is_cancelled());
    token.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[test]
fn cause_reaches_every_descendant() {
    let root = TaskContext::background();
    let child = root.child();
    let grandchild = child.with_value("v").child();
    let cause = io::Error::other("database unreachable");
    root.cancel_with(cause);
    for ctx in [&root, &child, &grandchild] {
        let err = ctx.err().expect("cancelled");
        assert_eq!(err.cause().unwrap().to_string(), "database unreachable");
    }
    // All descendants report the very same cause object.
    assert_eq!(root.err(), grandchild.err());
}

#[test]
fn first_cancellation_wins() {
    let root = TaskContext::background();
    let child = root.child();
    root.cancel_with(io::Error::other("first"));
    child.cancel_with(io::Error::other("second"));
    root.cancel_with(io::Error::other("third"));
    assert_eq!(child.err().unwrap().to_string(), "context cancelled: first");
    assert_eq!(root.err().unwrap().to_string(), "context cancelled: first");
}

#[test]
fn a_child_keeps_its_own_earlier_cause() {
    let root = TaskContext::background();
    let child = root.child();
    child.cancel_with(io::Error::other("child gave up"));
    root.cancel();
    assert_eq!(root.err(), Some(ContextError::Cancelled));
    assert_eq!(
        child.err().unwrap().to_string(),
        "context cancelled: child gave up"
    );
}

#[test]
fn cancelling_a_child_spares_parent_and_siblings() {
    let parent = TaskContext::background();
    let a = parent.child();
    let b = parent.child();
    let a_child = a.child();
    a.cancel();
    assert!(a.is_cancelled() && a_child.is_cancelled());
    assert!(!parent.is_cancelled());
    assert!(!b.is_cancelled());
    assert_eq!(parent.err(), None);
    assert_eq!(b.err(), None);
}

#[test]
fn value_contexts_are_cancellation_scopes_too() {
    let parent = TaskContext::background();
    let with_value = parent.with_value(5_i32);
    with_value.cancel();
    assert!(!parent.is_cancelled());
}

#[derive(Debug, PartialEq)]
struct RequestId(u32);
#[derive(Debug, PartialEq)]
struct User(&'static str);

#[test]
fn values_inherit_and_shadow() {
    let root = TaskContext::background().with_value(RequestId(1));
    let with_user = root.with_value(User("ann"));
    let shadowed = with_user.child().with_value(RequestId(2));
    assert_eq!(with_user.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(with_user.value::<User>(), Some(&User("ann")));
    assert_eq!(shadowed.value::<RequestId>(), Some(&RequestId(2)));
    assert_eq!(shadowed.value::<User>(), Some(&User("ann")));
    // Shadowing is local: the parent still sees its own value.
    assert_eq!(root.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(root.value::<User>(), None);
}

#[tokio::test(start_paused = true)]
async fn run_reports_why_it_stopped() {
    let ctx = TaskContext::background();
    assert_eq!(ctx.run(async { 1 }).await, Ok(1));

    let timed = ctx.with_timeout(Duration::from_secs(1));
    let slow = timed.run(tokio::time::sleep(Duration::from_secs(5))).await;
    assert_eq!(slow, Err(ContextError::DeadlineExceeded));

    let caused = ctx.child();
    let waiter = {
        let caused = caused.clone();
        tokio::spawn(async move { caused.run(std::future::pending::<()>()).await })
    };
    tokio::task::yield_now().await;
    caused.cancel_with(io::Error::other("shutting down"));
    let err = waiter.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "context cancelled: shutting down");

    let cancelled = ctx.child();
    cancelled.cancel();
    assert_eq!(
        cancelled.run(async { 1 }).await,
        Err(ContextError::Cancelled)
    );
}

#[tokio::test]
async fn current_inside_scope_and_spawn() {
    assert!(TaskContext::current().is_none());
    let ctx = TaskContext::background().with_value(User("scope"));
    let seen = ctx
        .scope(async {
            let inner = TaskContext::current().unwrap().with_value(User("nested"));
            let nested = inner
                .scope(async { TaskContext::current().unwrap().value::<User>().map(|u| u.0) })
                .await;
            // Leaving the inner scope restores the outer context.
            let outer = TaskContext::current().unwrap().value::<User>().map(|u| u.0);
            (nested, outer)
        })
        .await;
    assert_eq!(seen, (Some("nested"), Some("scope")));

    let spawned = ctx
        .spawn(async { TaskContext::current().unwrap().value::<User>().map(|u| u.0) })
        .await
        .unwrap();
    assert_eq!(spawned, Some("scope"));
    assert!(TaskContext::current().is_none());
}

#[tokio::test(start_paused = true)]
async fn spawned_task_sees_cancellation_of_its_context() {
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(2));
    let handle = ctx.spawn(async {
        let me = TaskContext::current().unwrap();
        me.cancelled().await;
        me.err()
    });
    assert_eq!(handle.await.unwrap(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_spawns_nothing_until_its_token_is_taken() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(100));
    let child = ctx.child().with_timeout(Duration::from_secs(5));
    let run = ctx.run(tokio::time::sleep(Duration::from_secs(1)));
    assert_eq!(alive_tasks(), baseline, "deriving spawns no timer");
    assert_eq!(run.await, Err(ContextError::DeadlineExceeded));
    assert_eq!(alive_tasks(), baseline, "neither does waiting on it");
    assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn no_timer_task_outlives_a_dropped_context() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(60));
    let child = ctx.with_timeout(Duration::from_secs(30));
    let _tokens = (ctx.token(), child.token());
    assert_eq!(alive_tasks(), baseline + 2, "one timer per own deadline");
    drop(ctx);
    settle().await;
    assert_eq!(
        alive_tasks(),
        baseline + 2,
        "the child keeps its parent alive"
    );
    drop(child);
    settle().await;
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn no_timer_task_outlives_a_cancelled_context() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(60));
    let _token = ctx.token();
    assert_eq!(alive_tasks(), baseline + 1);
    ctx.cancel();
    settle().await;
    assert_eq!(
        alive_tasks(),
        baseline,
        "cancelling stops the timer at once"
    );
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn no_timer_task_after_the_deadline_fires() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    ctx.token().cancelled().await;
    settle().await;
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn inherited_deadline_spawns_no_timer() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(1));
    let later = ctx.with_timeout(Duration::from_secs(5));
    let child = ctx.child();
    let _tokens = (later.token(), child.token(), ctx.token());
    assert_eq!(
        alive_tasks(),
        baseline + 1,
        "the owner's one timer serves them all"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_under_a_cancelled_parent_keeps_the_parent_cause() {
    let baseline = alive_tasks();
    let parent = TaskContext::background();
    parent.cancel_with(io::Error::other("gone"));
    let child = parent.with_timeout(Duration::from_secs(5));
    assert_eq!(
        alive_tasks(),
        baseline,
        "no timer for a context born cancelled"
    );
    assert_eq!(child.err().unwrap().to_string(), "context cancelled: gone");
}

#[test]
fn from_token_is_a_child_scope_of_the_token() {
    let token = CancellationToken::new();
    let ctx = TaskContext::from(token.clone());
    ctx.cancel();
    assert!(!token.is_cancelled(), "never cancels its parent");

    let token = CancellationToken::new();
    let ctx = TaskContext::from(token.clone()).child();
    token.cancel();
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
}

#[test]
fn cancelling_the_token_cancels_the_context() {
    let ctx = TaskContext::background();
    let child = ctx.child();
    ctx.token().cancel();
    assert_eq!(child.err(), Some(ContextError::Cancelled));
}

#[path = "support/span_values.rs"]
mod span_values;
use span_values::{SessionId, Tenant};

#[test]
fn span_fields_list_the_nearest_span_values_outermost_first() {
    let ctx = TaskContext::background()
        .with_span_value(Tenant("acme"))
        .with_value(User("not logged"))
        .with_span_value(SessionId(1))
        .with_span_value(SessionId(42));
    assert_eq!(ctx.span_fields(), "tenant=acme session_id=42");
}

#[test]
fn errors_display_and_compare() {
    assert_eq!(
        ContextError::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
    assert_ne!(ContextError::Cancelled, ContextError::DeadlineExceeded);
    let ctx = TaskContext::background();
    ctx.cancel_with(io::Error::other("x"));
    let err = ctx.err().unwrap();
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(
        format!("{err:?}"),
        r#"Cause(Custom { kind: Other, error: "x" })"#
    );
}

// A random tree of contexts and a random order of cancellations: every node is
// cancelled exactly when it or an ancestor was, and reports the cause of the
// earliest cancellation on its way to the root.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn cancellation_follows_the_tree(
        parents in prop::collection::vec(any::<prop::sample::Index>(), 1..24),
        cancels in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut nodes = vec![TaskContext::background()];
        let mut parent_of = vec![None];
        for p in &parents {
            let parent = p.index(nodes.len());
            let child = if nodes.len() % 2 == 0 {
                nodes[parent].child()
            } else {
                nodes[parent].with_value(nodes.len())
            };
            nodes.push(child);
            parent_of.push(Some(parent));
        }
        let mut cancelled_at = vec![None; nodes.len()];
        for (time, c) in cancels.iter().enumerate() {
            let n = c.index(nodes.len());
            nodes[n].cancel_with(io::Error::other(format!("cause {time}")));
            cancelled_at[n].get_or_insert(time);
        }
        for (n, node) in nodes.iter().enumerate() {
            let mut earliest: Option<usize> = None;
            let mut cur = Some(n);
            while let Some(i) = cur {
                if let Some(t) = cancelled_at[i] {
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                }
                cur = parent_of[i];
            }
            match earliest {
                None => prop_assert_eq!(node.err(), None),
                Some(t) => {
                    let err = node.err().expect("cancelled");
                    prop_assert_eq!(err.to_string(), format!("context cancelled: cause {t}"));
                }
            }
        }
    }
}
