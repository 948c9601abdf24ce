//! Regression tests for the pool stream operators, each named after a promise
//! an earlier version broke: results that waited behind a pending call, a
//! one-worker feedback loop that deadlocked, an ordered fail-fast run that
//! lost items, a panic hidden by a racing error or cancel, calls started
//! after a cancel, and a cancelled run that looked like success.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use tokio::time::Instant;
use tokio_conc::prelude::*;

mod pool_common;
use pool_common::Fail;

/// Long enough that only a hang reaches it.
const LONG: Duration = Duration::from_secs(10);

/// `0..n` as the input of a `try_` operator.
fn items(n: u32) -> impl Stream<Item = Result<u32, Fail>> + Send + Unpin + 'static {
    stream::iter((0..n).map(Ok))
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LONG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Returns `Pending` once, having woken itself: a short wait.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn boxed<'a, T>(
    s: impl Stream<Item = T> + Send + 'a,
) -> Pin<Box<dyn Stream<Item = T> + Send + 'a>> {
    Box::pin(s)
}

// ---------------------------------------------------------------------------
// A finished result never waits behind a pending call.

/// Items 0-9 each wait once, briefly; item 10 sleeps a second. Returns when
/// each item reached the consumer, measured from the start.
async fn arrivals_with_one_slow_item(ordered: bool) -> Vec<(u32, Duration)> {
    let call = |x: u32| async move {
        if x == 10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            PendingOnce(false).await;
        }
        x
    };
    let start = Instant::now();
    let mut s = if ordered {
        boxed(stream::iter(0..11).par_map(1, call))
    } else {
        boxed(stream::iter(0..11).par_map_unordered(1, call))
    };
    let mut arrivals = Vec::new();
    while let Some(x) = within("the pool", s.next()).await {
        arrivals.push((x, start.elapsed()));
    }
    arrivals
}

fn assert_arrived_before_the_slow_call_ended(arrivals: &[(u32, Duration)]) {
    assert_eq!(arrivals.len(), 11);
    for &(x, at) in arrivals.iter().filter(|(x, _)| *x != 10) {
        assert!(
            at < Duration::from_secs(1),
            "item {x} reached the consumer only after {at:?}, behind item 10's 1 s sleep"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn par_map_unordered_results_do_not_wait_behind_a_pending_call() {
    assert_arrived_before_the_slow_call_ended(&arrivals_with_one_slow_item(false).await);
}

#[tokio::test(start_paused = true)]
async fn par_map_results_do_not_wait_behind_a_pending_call() {
    assert_arrived_before_the_slow_call_ended(&arrivals_with_one_slow_item(true).await);
}

/// Two workers; every call waits once, briefly, and `blocked` waits on a
/// channel the test opens only after every other item has reached it.
async fn every_other_item_arrives_while_one_call_blocks(ordered: bool, blocked: u32) {
    let (open, gate) = tokio::sync::watch::channel(false);
    let call = move |x: u32| {
        let mut gate = gate.clone();
        async move {
            PendingOnce(false).await;
            if x == blocked {
                gate.wait_for(|open| *open).await.expect("gate kept");
            }
            x
        }
    };
    let mut s = if ordered {
        boxed(stream::iter(0..40).par_map(2, call))
    } else {
        boxed(stream::iter(0..40).par_map_unordered(2, call))
    };
    let mut got = Vec::new();
    for _ in 0..39 {
        let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        let Ok(Some(x)) = next else {
            panic!(
                "finished items stayed stuck behind the blocked call of item {blocked}: got only {got:?}"
            );
        };
        got.push(x);
    }
    assert!(!got.contains(&blocked));
    open.send(true).expect("gate");
    assert_eq!(within("the blocked item", s.next()).await, Some(blocked));
    assert_eq!(within("the end", s.next()).await, None);
}

#[test]
fn par_map_unordered_results_do_not_wait_behind_a_blocked_call_of_two_workers() {
    current_thread().block_on(every_other_item_arrives_while_one_call_blocks(false, 10));
    multi_thread().block_on(async {
        tokio::spawn(every_other_item_arrives_while_one_call_blocks(false, 10))
            .await
            .unwrap()
    });
}

#[test]
fn par_map_results_do_not_wait_behind_a_blocked_call_of_two_workers() {
    current_thread().block_on(every_other_item_arrives_while_one_call_blocks(true, 39));
    multi_thread().block_on(async {
        tokio::spawn(every_other_item_arrives_while_one_call_blocks(true, 39))
            .await
            .unwrap()
    });
}

// ---------------------------------------------------------------------------
// A one-worker pool whose calls wait for the consumer does not deadlock.

/// Call `i` waits until the consumer has received item `i - 1` (a
/// request/response loop). Sequential `then` finishes; so must the pool.
async fn feedback_loop(operator: &str) {
    const N: u32 = 100;
    let (received, watch) = tokio::sync::watch::channel(0_u32);
    let call = move |i: u32| {
        let mut watch = watch.clone();
        async move {
            watch
                .wait_for(|got| *got >= i)
                .await
                .expect("consumer alive");
            i
        }
    };
    let mut s = match operator {
        "then" => boxed(stream::iter(0..N).then(call)),
        "par_map" => boxed(stream::iter(0..N).par_map(1, call)),
        _ => boxed(stream::iter(0..N).par_map_unordered(1, call)),
    };
    for i in 0..N {
        let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        assert_eq!(
            next,
            Ok(Some(i)),
            "{operator} deadlocked waiting for item {i}"
        );
        received.send_replace(i + 1);
    }
    assert_eq!(within(operator, s.next()).await, None);
}

#[test]
fn one_worker_pool_whose_calls_wait_for_the_consumer_finishes_like_then() {
    for operator in ["then", "par_map", "par_map_unordered"] {
        current_thread().block_on(feedback_loop(operator));
        multi_thread().block_on(async { tokio::spawn(feedback_loop(operator)).await.unwrap() });
    }
}

// ---------------------------------------------------------------------------
// Ordered fail-fast yields every item before the first error, then ends.

#[test]
fn ordered_try_par_map_yields_every_item_before_the_first_error_and_ends() {
    let rt = multi_thread();
    let expected: Vec<Result<u32, Fail>> = (0..80).map(Ok).chain([Err(Fail::Item(80))]).collect();
    for attempt in 0..40 {
        let got = rt.block_on(async {
            let run = items(200)
                .try_par_map(2, |x| async move {
                    if x % 2 == 1 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    if x == 80 { Err(Fail::Item(x)) } else { Ok(x) }
                })
                .collect::<Vec<_>>();
            within("try_par_map", tokio::spawn(run)).await.unwrap()
        });
        assert_eq!(got, expected, "attempt {attempt}");
    }
}

// ---------------------------------------------------------------------------
// A panic is resumed in the consumer, whatever else is ending the pool.

/// Makes a panic's unwinding take 20 ms (a destructor that blocks).
struct SlowUnwind;

impl Drop for SlowUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Item 0 panics at once, unwinding slowly; item 1 ends the pool at 2 ms
/// with `stop` (an error, or cancelling the context); later items wait.
async fn racing_panic<T>(x: u32, stop: impl FnOnce() -> T, fine: T) -> T {
    match x {
        0 => {
            let _slow = SlowUnwind;
            panic!("item 0 exploded");
        }
        1 => {
            tokio::time::sleep(Duration::from_millis(2)).await;
            stop()
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            fine
        }
    }
}

/// Runs `run` a few times on a 2-thread runtime; each time it must panic with
/// item 0's message.
fn assert_panic_wins<F, Fut>(operator: &str, run: F)
where
    F: Fn() -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: std::fmt::Debug + Send,
{
    let rt = multi_thread();
    for attempt in 0..5 {
        let outcome = rt.block_on(async {
            let caught = AssertUnwindSafe(run()).catch_unwind();
            within(operator, tokio::spawn(caught)).await.unwrap()
        });
        match outcome {
            Err(panic) => {
                let message = panic.downcast_ref::<&str>().copied().unwrap_or("?");
                assert_eq!(message, "item 0 exploded", "{operator}, attempt {attempt}");
            }
            Ok(out) => panic!(
                "{operator}, attempt {attempt}: the panic of item 0 was swallowed; got {out:?}"
            ),
        }
    }
}

#[test]
fn try_par_map_unordered_resumes_a_panic_that_races_an_error() {
    assert_panic_wins("try_par_map_unordered", || {
        items(4)
            .try_par_map_unordered(2, |x| racing_panic(x, || Err(Fail::Item(1)), Ok(x)))
            .collect::<Vec<_>>()
    });
}

#[test]
fn try_par_map_resumes_a_panic_that_races_an_error() {
    assert_panic_wins("try_par_map", || {
        items(4)
            .try_par_map(2, |x| racing_panic(x, || Err(Fail::Item(1)), Ok(x)))
            .collect::<Vec<_>>()
    });
}

#[test]
fn try_par_for_each_resumes_a_panic_that_races_an_error() {
    assert_panic_wins("try_par_for_each", || {
        items(4).try_par_for_each(2, |x| racing_panic(x, || Err(Fail::Item(1)), Ok(())))
    });
}

#[test]
fn par_map_unordered_resumes_a_panic_that_races_a_cancel() {
    assert_panic_wins("par_map_unordered", || {
        let ctx = TaskContext::background();
        let canceller = ctx.clone();
        stream::iter(0..4)
            .par_map_unordered(Workers::new(2).context(&ctx), move |x| {
                let ctx = canceller.clone();
                racing_panic(x, move || ctx.cancel(), ())
            })
            .collect::<Vec<_>>()
    });
}

#[test]
fn try_par_for_each_resumes_a_panic_that_races_a_cancel() {
    assert_panic_wins("try_par_for_each with a context", || {
        let ctx = TaskContext::background();
        let canceller = ctx.clone();
        items(4).try_par_for_each(Workers::new(2).context(&ctx), move |x| {
            let ctx = canceller.clone();
            racing_panic(
                x,
                move || {
                    ctx.cancel();
                    Ok(())
                },
                Ok(()),
            )
        })
    });
}

#[test]
fn par_for_each_resumes_a_panic_that_races_a_cancel() {
    assert_panic_wins("par_for_each", || {
        let ctx = TaskContext::background();
        let canceller = ctx.clone();
        stream::iter(0..4).par_for_each(Workers::new(2).context(&ctx), move |x| {
            let ctx = canceller.clone();
            racing_panic(x, move || ctx.cancel(), ())
        })
    });
}

// ---------------------------------------------------------------------------
// No call starts after the pool's context is cancelled.

/// Item 5's call cancels the pool's context. Returns how many calls started
/// (the pool called `f`) after that `cancel()` had returned.
///
/// "After it returned", not "once `is_cancelled()` reads true": the token
/// reads as cancelled a moment before `cancel()` has told its waiters (the
/// pool's stop flag among them), and a worker on another thread may start
/// calls in that moment — concurrent with the cancel, not after it.
async fn calls_started_after_a_cancel_from_inside(workers: usize) -> usize {
    let ctx = TaskContext::background();
    let late = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c, l, done) = (ctx.clone(), late.clone(), cancelled.clone());
    let yielded = stream::iter(0..1000_u32)
        .par_map_unordered(Workers::new(workers).context(&ctx), move |x| {
            if done.load(Ordering::SeqCst) {
                l.fetch_add(1, Ordering::SeqCst);
            }
            let (ctx, done) = (c.clone(), done.clone());
            async move {
                if x == 5 {
                    ctx.cancel();
                    done.store(true, Ordering::SeqCst);
                }
                x
            }
        })
        .count();
    let yielded = within("par_map_unordered", yielded).await;
    assert!(yielded < 1000, "the cancel stopped the run");
    late.load(Ordering::SeqCst)
}

#[test]
fn no_call_starts_after_the_context_is_cancelled_from_inside_a_call() {
    for _ in 0..20 {
        let late = current_thread().block_on(calls_started_after_a_cancel_from_inside(2));
        assert_eq!(late, 0, "calls started after the cancel");
    }
    // On two threads the other worker may be starting a call at the very
    // moment of the cancel; it must not start any after that.
    let rt = multi_thread();
    for _ in 0..20 {
        let late = rt.block_on(async {
            tokio::spawn(calls_started_after_a_cancel_from_inside(2))
                .await
                .unwrap()
        });
        assert!(late <= 1, "{late} calls started after the cancel");
    }
}

// ---------------------------------------------------------------------------
// A run cut short by its context is never a complete-looking `Ok`.

/// A call that cancels `ctx` once five calls have started.
fn cancels_after_five(
    ctx: &TaskContext,
) -> impl Fn(u32) -> std::future::Ready<Result<u32, Fail>> + Send + Sync + 'static {
    let (ctx, started) = (ctx.clone(), Arc::new(AtomicUsize::new(0)));
    move |x| {
        if started.fetch_add(1, Ordering::SeqCst) == 5 {
            ctx.cancel();
        }
        std::future::ready(Ok(x))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_par_for_each_cut_short_by_its_context_returns_the_context_error() {
    let ctx = TaskContext::background();
    let call = cancels_after_five(&ctx);
    let out = items(1000)
        .try_par_for_each(Workers::new(2).context(&ctx), move |x| {
            let done = call(x);
            async move { done.await.map(drop) }
        })
        .await;
    assert_eq!(out, Err(Fail::Stopped(ContextError::Cancelled)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_par_map_cut_short_by_its_context_ends_with_the_context_error() {
    let ctx = TaskContext::background();
    let collected: Result<Vec<u32>, Fail> = items(1000)
        .try_par_map(Workers::new(2).context(&ctx), cancels_after_five(&ctx))
        .try_collect()
        .await;
    assert_eq!(collected, Err(Fail::Stopped(ContextError::Cancelled)));

    let ctx = TaskContext::background();
    let all: Vec<Result<u32, Fail>> = items(1000)
        .try_par_map_unordered(Workers::new(2).context(&ctx), cancels_after_five(&ctx))
        .collect()
        .await;
    assert_eq!(
        all.last(),
        Some(&Err(Fail::Stopped(ContextError::Cancelled)))
    );
    assert_eq!(all.iter().filter(|r| r.is_err()).count(), 1);
    assert!(all.len() < 1000);
}

#[tokio::test(start_paused = true)]
async fn try_par_map_past_its_deadline_ends_with_deadline_exceeded() {
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(50));
    let out: Vec<Result<u32, Fail>> = items(1000)
        .try_par_map(Workers::new(2).context(&ctx), |x| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(x)
        })
        .collect()
        .await;
    assert_eq!(
        out.last(),
        Some(&Err(Fail::Stopped(ContextError::DeadlineExceeded)))
    );
    let oks: Vec<u32> = out.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(oks, (0..oks.len() as u32).collect::<Vec<_>>(), "in order");
    assert!(oks.len() < 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_non_try_pool_just_ends_and_the_context_says_why() {
    let ctx = TaskContext::background();
    let call = cancels_after_five(&ctx);
    let n = stream::iter(0..1000)
        .par_map(Workers::new(2).context(&ctx), call)
        .count()
        .await;
    assert!(n < 1000);
    assert_eq!(ctx.err(), Some(ContextError::Cancelled));
}

#[tokio::test]
async fn a_run_that_completed_before_the_cancel_is_ok() {
    let ctx = TaskContext::background();
    let out = items(10)
        .try_par_for_each(Workers::new(2).context(&ctx), |_| async { Ok(()) })
        .await;
    ctx.cancel();
    assert_eq!(out, Ok(()));
}
