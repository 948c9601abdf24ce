//! Properties of the pool stream operators: what they yield, in which order,
//! how many calls run at once and how far input is pulled ahead.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio_conc::prelude::*;

mod pool_common;
use pool_common::Fail;

/// Counts how many calls of the pool's function run at once, and the most.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self.now.clone())
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A source that records, at every pull, how many items were pulled but not
/// yet received by the consumer (`yielded` is bumped by the test).
struct Counted<S> {
    inner: S,
    pulled: Arc<AtomicUsize>,
    yielded: Arc<AtomicUsize>,
    max_ahead: Arc<AtomicUsize>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = next {
            let pulled = self.pulled.fetch_add(1, Ordering::SeqCst) + 1;
            let ahead = pulled - self.yielded.load(Ordering::SeqCst);
            self.max_ahead.fetch_max(ahead, Ordering::SeqCst);
        }
        next
    }
}

struct Probe {
    yielded: Arc<AtomicUsize>,
    max_ahead: Arc<AtomicUsize>,
}

fn counted<T>(items: Vec<T>) -> (Counted<stream::Iter<std::vec::IntoIter<T>>>, Probe) {
    let yielded = Arc::new(AtomicUsize::new(0));
    let max_ahead = Arc::new(AtomicUsize::new(0));
    let source = Counted {
        inner: stream::iter(items),
        pulled: Arc::new(AtomicUsize::new(0)),
        yielded: yielded.clone(),
        max_ahead: max_ahead.clone(),
    };
    (source, Probe { yielded, max_ahead })
}

/// Drains `s`, bumping `probe.yielded` as each item arrives.
async fn drain<T>(s: impl Stream<Item = T>, probe: &Probe) -> Vec<T> {
    let mut s = std::pin::pin!(s);
    let mut out = Vec::new();
    while let Some(x) = s.next().await {
        probe.yielded.fetch_add(1, Ordering::SeqCst);
        out.push(x);
    }
    out
}

/// Paused time: per-item sleeps of `delay` ms cost nothing and reorder finishes.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn parallel_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Per-item work: a paused-time sleep and a few yields, so items finish out
/// of order on either runtime.
async fn work(x: u32, delay: u8, in_flight: &InFlight) -> u64 {
    let _guard = in_flight.enter();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
    }
    for _ in 0..delay % 4 {
        tokio::task::yield_now().await;
    }
    u64::from(x) * 3 + 1
}

/// Runs `fut` to completion, failing (not hanging) if it takes too long:
/// on paused time the deadline passes as soon as everything is idle.
fn within_time<T>(rt: tokio::runtime::Runtime, fut: impl Future<Output = T>) -> T {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("the pool hung")
    })
}

/// `items` as a `try_` input, with every item whose value is a multiple of
/// `bad_every` already an `Err`.
fn fallible_input(items: &[(u32, u8)], bad_every: u32) -> Vec<Result<(u32, u8), Fail>> {
    items
        .iter()
        .map(|&(x, d)| {
            if x % bad_every == 1 {
                Err(Fail::Item(x))
            } else {
                Ok((x, d))
            }
        })
        .collect()
}

fn inputs() -> impl Strategy<Value = (Vec<(u32, u8)>, usize, usize, bool)> {
    (
        prop::collection::vec((any::<u32>(), 0_u8..20), 0..120),
        1_usize..16,
        1_usize..24,
        any::<bool>(),
    )
}

fn runtime(parallel: bool) -> tokio::runtime::Runtime {
    if parallel {
        parallel_runtime()
    } else {
        paused_runtime()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn par_map_equals_sequential_map((items, workers, buffer, parallel) in inputs()) {
        let expected: Vec<u64> = items.iter().map(|(x, _)| u64::from(*x) * 3 + 1).collect();
        let in_flight = InFlight::default();
        let flight = in_flight.clone();
        let (source, probe) = counted(items);
        let got = within_time(runtime(parallel), async {
            let s = source.par_map(Workers::new(workers).buffer(buffer), move |(x, d)| {
                let flight = flight.clone();
                async move { work(x, d, &flight).await }
            });
            drain(s, &probe).await
        });
        prop_assert_eq!(got, expected);
        prop_assert!(in_flight.max() <= workers, "{} calls at once > {} workers", in_flight.max(), workers);
        let ahead = probe.max_ahead.load(Ordering::SeqCst);
        prop_assert!(ahead <= workers + buffer, "{ahead} pulled ahead > {workers} + {buffer}");
    }

    #[test]
    fn par_map_unordered_yields_the_same_multiset((items, workers, buffer, parallel) in inputs()) {
        let mut expected: Vec<u64> = items.iter().map(|(x, _)| u64::from(*x) * 3 + 1).collect();
        let in_flight = InFlight::default();
        let flight = in_flight.clone();
        let (source, probe) = counted(items);
        let mut got = within_time(runtime(parallel), async {
            let s = source.par_map_unordered(Workers::new(workers).buffer(buffer), move |(x, d)| {
                let flight = flight.clone();
                async move { work(x, d, &flight).await }
            });
            drain(s, &probe).await
        });
        got.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(got, expected);
        prop_assert!(in_flight.max() <= workers);
        prop_assert!(probe.max_ahead.load(Ordering::SeqCst) <= workers + buffer);
    }

    #[test]
    fn par_map_keyed_keeps_order_within_each_key(
        (items, workers, buffer, parallel) in inputs(),
        keys in 1_u32..6,
    ) {
        let keyed: Vec<(u32, u32, u8)> =
            items.iter().enumerate().map(|(i, (x, d))| (x % keys, i as u32, *d)).collect();
        let busy: Arc<std::sync::Mutex<HashMap<u32, bool>>> = Arc::default();
        let overlap = Arc::new(AtomicUsize::new(0));
        let (busy2, overlap2) = (busy.clone(), overlap.clone());
        let (source, probe) = counted(keyed.clone());
        let got = within_time(runtime(parallel), async {
            let s = source.par_map_keyed(
                Workers::new(workers).buffer(buffer),
                |(key, _, _)| *key,
                move |(key, i, d)| {
                    let (busy, overlap) = (busy2.clone(), overlap2.clone());
                    async move {
                        if busy.lock().unwrap().insert(key, true) == Some(true) {
                            overlap.fetch_add(1, Ordering::SeqCst);
                        }
                        work(i, d, &InFlight::default()).await;
                        busy.lock().unwrap().insert(key, false);
                        (key, i)
                    }
                },
            );
            drain(s, &probe).await
        });
        prop_assert_eq!(got.len(), keyed.len());
        prop_assert_eq!(overlap.load(Ordering::SeqCst), 0, "two calls of one key ran at once");
        for key in 0..keys {
            let order: Vec<u32> = got.iter().filter(|(k, _)| *k == key).map(|(_, i)| *i).collect();
            let input: Vec<u32> = keyed.iter().filter(|(k, _, _)| *k == key).map(|(_, i, _)| *i).collect();
            prop_assert_eq!(order, input, "key {} out of order", key);
        }
        prop_assert!(probe.max_ahead.load(Ordering::SeqCst) <= workers + buffer);
    }

    #[test]
    fn try_par_map_is_the_sequential_map_up_to_its_first_error(
        (items, workers, buffer, parallel) in inputs(),
        fail_every in 2_u32..40,
        bad_input_every in 2_u32..80,
    ) {
        // Some input items are `Err` already; `f` fails on others.
        let input = fallible_input(&items, bad_input_every);
        let step = move |x: u32| if x % fail_every == 0 { Err(Fail::Item(x)) } else { Ok(u64::from(x)) };
        let mut expected = Vec::new();
        for item in &input {
            expected.push(item.clone().and_then(|(x, _)| step(x)));
            if expected.last().unwrap().is_err() {
                break;
            }
        }
        let in_flight = InFlight::default();
        let flight = in_flight.clone();
        let got: Vec<Result<u64, Fail>> = within_time(runtime(parallel), async {
            stream::iter(input)
                .try_par_map(Workers::new(workers).buffer(buffer), move |(x, d)| {
                    let flight = flight.clone();
                    async move {
                        work(x, d, &flight).await;
                        step(x)
                    }
                })
                .collect()
                .await
        });
        prop_assert_eq!(got, expected);
        prop_assert!(in_flight.max() <= workers);
    }

    #[test]
    fn try_par_map_unordered_ends_with_one_error_after_successes(
        (items, workers, buffer, parallel) in inputs(),
        fail_every in 2_u32..40,
        bad_input_every in 2_u32..80,
    ) {
        let input = fallible_input(&items, bad_input_every);
        let step = move |x: u32| if x % fail_every == 0 { Err(Fail::Item(x)) } else { Ok(x) };
        let any_fails = input.iter().any(|item| item.clone().and_then(|(x, _)| step(x)).is_err());
        let got: Vec<Result<u32, Fail>> = within_time(runtime(parallel), async {
            stream::iter(input.clone())
                .try_par_map_unordered(Workers::new(workers).buffer(buffer), move |(x, d)| async move {
                    work(x, d, &InFlight::default()).await;
                    step(x)
                })
                .collect()
                .await
        });
        let errors = got.iter().filter(|r| r.is_err()).count();
        if any_fails {
            prop_assert_eq!(errors, 1);
            prop_assert!(got.last().unwrap().is_err(), "the error is the last item");
        } else {
            prop_assert_eq!(errors, 0);
            prop_assert_eq!(got.len(), items.len());
        }
        // Every success is an input's, each at most as often as it occurs.
        let mut pool: Vec<u32> = input.iter().flatten().map(|(x, _)| *x).collect();
        for x in got.iter().flatten() {
            let at = pool.iter().position(|y| y == x);
            prop_assert!(at.is_some(), "{} yielded but not an input", x);
            pool.swap_remove(at.unwrap());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_item_pauses_intake_in_order() {
    let (source, probe) = counted((0..1000_u64).collect());
    let s = source.par_map(Workers::new(2).buffer(4), |x| async move {
        if x == 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        x
    });
    let mut s = std::pin::pin!(s);
    // Nothing can be yielded while item 0 sleeps; intake stops at the window.
    assert!(
        tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .is_err()
    );
    assert_eq!(
        probe.max_ahead.load(Ordering::SeqCst),
        6,
        "workers (2) + buffer (4)"
    );
    assert_eq!(s.next().await, Some(0));
    probe.yielded.fetch_add(1, Ordering::SeqCst);
    let rest = drain(s, &probe).await;
    assert_eq!(rest, (1..1000).collect::<Vec<_>>());
    assert!(probe.max_ahead.load(Ordering::SeqCst) <= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_workers_calls_run_at_once_on_a_parallel_runtime() {
    let in_flight = InFlight::default();
    let flight = in_flight.clone();
    let n = stream::iter(0..20_000_u32)
        .par_map_unordered(3, move |x| {
            let guard = flight.enter();
            async move {
                tokio::task::yield_now().await;
                drop(guard);
                x
            }
        })
        .count()
        .await;
    assert_eq!(n, 20_000);
    assert!(in_flight.max() <= 3, "{} at once", in_flight.max());
}

#[tokio::test]
async fn par_for_each_visits_every_item_once() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    stream::iter(0..500_u32)
        .par_for_each(4, move |x| {
            let log = log.clone();
            async move { log.lock().unwrap().push(x) }
        })
        .await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..500).collect::<Vec<_>>());
}

#[tokio::test]
async fn try_par_for_each_returns_the_first_error() {
    let out = stream::iter(0..100_u32)
        .map(Ok)
        .try_par_for_each(4, |x| async move {
            if x == 42 { Err(Fail::Item(x)) } else { Ok(()) }
        })
        .await;
    assert_eq!(out, Err(Fail::Item(42)));
    let ok = stream::iter(0..100_u32)
        .map(Ok::<_, Fail>)
        .try_par_for_each(4, |_| async { Ok(()) })
        .await;
    assert_eq!(ok, Ok(()));
}

#[tokio::test]
async fn try_par_for_each_returns_the_inputs_error() {
    let input = stream::iter(0..100_u32).map(|x| if x == 42 { Err(Fail::Item(x)) } else { Ok(x) });
    let out = input.try_par_for_each(4, |_| async { Ok(()) }).await;
    assert_eq!(out, Err(Fail::Item(42)));
}

#[tokio::test]
async fn try_stages_chain_and_pass_the_first_error_on() {
    let stages = |input: Vec<Result<u32, Fail>>| {
        stream::iter(input)
            .try_par_map(3, |x| async move {
                if x == 7 {
                    Err(Fail::Item(x))
                } else {
                    Ok(x * 10)
                }
            })
            .try_par_map(2, |x| async move {
                if x == 50 {
                    Err(Fail::Item(x))
                } else {
                    Ok(x + 1)
                }
            })
            .collect::<Vec<_>>()
    };
    let ok: Vec<Result<u32, Fail>> = (0..5).map(Ok).collect();
    assert_eq!(stages(ok).await, [Ok(1), Ok(11), Ok(21), Ok(31), Ok(41)]);
    // The second stage fails on 5 * 10, before the first reaches 7.
    let out = stages((0..10).map(Ok).collect()).await;
    assert_eq!(
        out,
        [Ok(1), Ok(11), Ok(21), Ok(31), Ok(41), Err(Fail::Item(50))]
    );
    // An input error goes through both stages and ends them.
    let out = stages(vec![Ok(1), Err(Fail::Item(99)), Ok(2)]).await;
    assert_eq!(out, [Ok(11), Err(Fail::Item(99))]);
}

#[tokio::test]
async fn items_never_queue_behind_a_call_that_waits() {
    // Fast items grow the workers' batches; then one call blocks. The rest of
    // its batch must go to the other worker rather than wait behind it.
    let (release, blocked) = tokio::sync::oneshot::channel::<()>();
    let blocked = Arc::new(tokio::sync::Mutex::new(Some(blocked)));
    let s = stream::iter(0..400_u32).par_map_unordered(Workers::new(2).buffer(128), move |x| {
        let blocked = blocked.clone();
        async move {
            if x == 200 {
                let rx = blocked.lock().await.take().unwrap();
                rx.await.unwrap();
            }
            x
        }
    });
    let mut s = std::pin::pin!(s);
    let mut others = Vec::new();
    for _ in 0..399 {
        let x = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("an item is stuck behind the blocked call");
        others.push(x.unwrap());
    }
    assert!(!others.contains(&200));
    release.send(()).unwrap();
    assert_eq!(s.next().await, Some(200));
    assert_eq!(s.next().await, None);
}
