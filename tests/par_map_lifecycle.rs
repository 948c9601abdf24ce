//! How the pool stream operators start and stop: tasks, cancellation, panics,
//! fail-fast, context and spans, parallelism.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, stream};
use tokio_conc::prelude::*;

mod pool_common;
use pool_common::Fail;

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (a bounded while) for the live task count to return to `baseline`.
async fn back_to(baseline: usize) {
    let settled = async {
        while alive() != baseline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .is_err()
    {
        panic!("{} tasks alive, expected {baseline}", alive());
    }
}

/// Counts the calls of the pool's function that started and those whose
/// future was dropped (finished or cancelled).
#[derive(Clone, Default)]
struct Calls {
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

struct CallGuard(Arc<AtomicUsize>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Calls {
    fn start(&self) -> CallGuard {
        self.started.fetch_add(1, Ordering::SeqCst);
        CallGuard(self.dropped.clone())
    }
    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_have_returned_when_the_output_ends() {
    let baseline = alive();
    let n = stream::iter(0..10_000)
        .par_map_unordered(4, |x| async move { x })
        .count()
        .await;
    assert_eq!(n, 10_000);
    back_to(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_output_cancels_the_workers_and_their_calls() {
    let baseline = alive();
    let calls = Calls::default();
    let c = calls.clone();
    let mut s = stream::iter(0..1000_u32).par_map(4, move |x| {
        let guard = c.start();
        async move {
            if x > 0 {
                std::future::pending::<()>().await;
            }
            drop(guard);
            x
        }
    });
    assert_eq!(s.next().await, Some(0));
    while calls.started() < 5 {
        tokio::task::yield_now().await;
    }
    assert!(alive() > baseline, "the workers are running");
    drop(s);
    back_to(baseline).await;
    assert_eq!(
        calls.dropped(),
        calls.started(),
        "every started call was dropped"
    );
    assert!(calls.started() <= 5, "at most 4 stuck calls plus item 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_context_ends_the_stream_promptly() {
    let baseline = alive();
    let ctx = TaskContext::background();
    let calls = Calls::default();
    let c = calls.clone();
    let mut s =
        stream::iter(0..u32::MAX).par_map_unordered(Workers::new(3).context(&ctx), move |x| {
            let guard = c.start();
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(guard);
                x
            }
        });
    let canceller = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        canceller.cancel();
    });
    let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
    assert_eq!(end, Ok(None), "the stream ended, not hung");
    // The stream ends only after its workers have returned.
    assert_eq!(calls.dropped(), calls.started());
    assert_eq!(s.next().await, None);
    drop(s);
    back_to(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_f_is_resumed_in_the_consumer_with_its_message() {
    let baseline = alive();
    let calls = Calls::default();
    let c = calls.clone();
    let s = stream::iter(0..1000_u32).par_map(4, move |x| {
        let guard = c.start();
        async move {
            if x == 7 {
                panic!("item {x} is cursed");
            }
            tokio::time::sleep(Duration::from_millis(if x < 7 { 0 } else { 3_600_000 })).await;
            drop(guard);
            x
        }
    });
    let caught = AssertUnwindSafe(s.collect::<Vec<_>>()).catch_unwind().await;
    let payload = caught.expect_err("the panic reached the consumer");
    let message = payload
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert_eq!(message, "item 7 is cursed");
    back_to(baseline).await;
    assert_eq!(
        calls.dropped(),
        calls.started(),
        "the other calls were cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_par_map_unordered_stops_at_the_first_error_and_cancels_the_rest() {
    let baseline = alive();
    let calls = Calls::default();
    let c = calls.clone();
    let out: Vec<Result<u32, Fail>> = tokio::time::timeout(
        Duration::from_secs(5),
        stream::iter(0..10_000_u32)
            .map(Ok)
            .try_par_map_unordered(4, move |x| {
                let guard = c.start();
                async move {
                    if x == 2 {
                        return Err(Fail::Item(x));
                    }
                    std::future::pending::<()>().await;
                    drop(guard);
                    Ok(x)
                }
            })
            .collect(),
    )
    .await
    .expect("the error ended the stream although the other calls never finish");
    assert_eq!(out, [Err(Fail::Item(2))]);
    back_to(baseline).await;
    assert!(
        calls.started() <= 4,
        "items after the error were not started"
    );
    assert_eq!(
        calls.dropped(),
        calls.started(),
        "the running calls were cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_par_map_waits_for_earlier_items_and_drops_later_ones() {
    let baseline = alive();
    let calls = Calls::default();
    let c = calls.clone();
    let out: Vec<Result<u32, Fail>> = stream::iter(0..10_000_u32)
        .map(Ok)
        .try_par_map(Workers::new(4).buffer(8), move |x| {
            let guard = c.start();
            async move {
                match x {
                    // The failure finishes first; item 0 must still be yielded before it.
                    0 => tokio::time::sleep(Duration::from_millis(50)).await,
                    3 => return Err(Fail::Item(x)),
                    _ => {}
                }
                drop(guard);
                Ok(x)
            }
        })
        .collect()
        .await;
    assert_eq!(out, [Ok(0), Ok(1), Ok(2), Err(Fail::Item(3))]);
    back_to(baseline).await;
    assert!(
        calls.started() < 100,
        "intake stopped at the failure: {} started",
        calls.started()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_par_for_each_returns_after_the_workers_have_stopped() {
    let baseline = alive();
    let out = stream::iter(0..u32::MAX)
        .map(Ok)
        .try_par_for_each(3, |x| async move {
            if x == 10 {
                Err(Fail::Item(x))
            } else {
                tokio::task::yield_now().await;
                Ok(())
            }
        })
        .await;
    assert_eq!(out, Err(Fail::Item(10)));
    back_to(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_calls_run_on_two_threads_at_once() {
    // Each call spins, without awaiting, until another call is running at
    // the same moment. If the pool ran its workers one after the other on
    // one thread, no call would ever see another and all would time out.
    let running = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (r, l) = (running.clone(), log.clone());
    let met = stream::iter(0..40_u32)
        .par_map_unordered(2, move |_| {
            let (running, log) = (r.clone(), l.clone());
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                let mut met = false;
                while start.elapsed() < Duration::from_millis(500) {
                    if running.load(Ordering::SeqCst) >= 2 {
                        met = true;
                        break;
                    }
                    std::hint::spin_loop();
                }
                // Stay busy a little longer so the other call sees this one too.
                while start.elapsed() < Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                log.lock()
                    .unwrap()
                    .push((std::thread::current().id(), start, Instant::now()));
                met
            }
        })
        .filter(|met| std::future::ready(*met))
        .count()
        .await;
    let log = log.lock().unwrap();
    let threads: HashSet<_> = log.iter().map(|(thread, _, _)| *thread).collect();
    assert!(threads.len() >= 2, "all calls ran on one thread");
    let overlapping = log.iter().any(|(ta, sa, ea)| {
        log.iter()
            .any(|(tb, sb, eb)| ta != tb && sa < eb && sb < ea)
    });
    assert!(
        overlapping,
        "no two calls on different threads overlapped in time"
    );
    assert!(met >= 20, "only {met} of 40 calls ran alongside another");
}

#[derive(Debug, PartialEq)]
struct RequestId(u32);

#[tokio::test]
async fn calls_run_with_the_pool_context_current() {
    let ctx = TaskContext::background().with_value(RequestId(9));
    let seen: Vec<Option<u32>> = stream::iter(0..20)
        .par_map(Workers::new(3).context(&ctx), |_| async {
            TaskContext::current().and_then(|c| c.value::<RequestId>().map(|r| r.0))
        })
        .collect()
        .await;
    assert_eq!(seen, vec![Some(9); 20]);
}

#[tokio::test]
async fn without_a_context_the_callers_context_is_inherited() {
    let ctx = TaskContext::background().with_value(RequestId(4));
    let seen: Vec<Option<u32>> = ctx
        .scope(async {
            stream::iter(0..5)
                .par_map_unordered(2, |_| async {
                    TaskContext::current().and_then(|c| c.value::<RequestId>().map(|r| r.0))
                })
                .collect()
                .await
        })
        .await;
    assert_eq!(seen, vec![Some(4); 5]);
}

#[test]
#[should_panic(expected = "`workers` must be at least 1, got 0")]
fn zero_workers_panic_at_construction() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = stream::iter(0..3).par_map(0, |x| async move { x });
    });
}

#[test]
#[should_panic(expected = "par_map_unordered must be called within a Tokio runtime")]
fn outside_a_runtime_the_panic_names_the_operator() {
    let _ = stream::iter(0..3).par_map_unordered(2, |x| async move { x });
}

#[test]
fn the_streams_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _enter = rt.enter();
    assert_send(&stream::iter(0..3).par_map(2, |x| async move { x }));
    assert_send(&stream::iter(0..3).par_map_unordered(2, |x| async move { x }));
    assert_send(&stream::iter(0..3).par_map_keyed(2, |x| *x, |x| async move { x }));
    let fallible = || stream::iter(0..3).map(Ok::<_, Fail>);
    assert_send(&fallible().try_par_map(2, |x| async move { Ok(x) }));
    assert_send(&fallible().try_par_map_unordered(2, |x| async move { Ok(x) }));
    assert_send(&stream::iter(0..3).par_for_each(2, |_| async {}));
    assert_send(&fallible().try_par_for_each(2, |_| async { Ok(()) }));
    let debug = format!("{:?}", stream::iter(0..3).par_map(2, |x| async move { x }));
    assert!(debug.starts_with("Pool { workers: 0"), "{debug}");
}
