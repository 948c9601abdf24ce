//! The pool operators' part of the crate's one surface: fused streams with
//! honest size hints, a `buffer_size()` that is what the operator pulls
//! ahead, and the one ambient-context rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::FusedFuture;
use futures::stream::FusedStream;
use futures::{Stream, StreamExt, stream};
use tokio_conc::prelude::*;

mod pool_common;
use pool_common::Fail;

const LONG: Duration = Duration::from_secs(10);

/// Drains `s`, checking before every poll that its hint holds what really
/// came after, and that it ends fused with `(0, Some(0))`.
async fn drain_checked<S>(name: &str, mut s: S) -> usize
where
    S: FusedStream + Unpin,
{
    let mut hints = Vec::new();
    loop {
        assert!(!s.is_terminated(), "{name}: terminated before its end");
        hints.push(s.size_hint());
        let next = tokio::time::timeout(LONG, s.next())
            .await
            .unwrap_or_else(|_| panic!("{name} hung"));
        if next.is_none() {
            break;
        }
    }
    let yielded = hints.len() - 1;
    for (step, &(lower, upper)) in hints.iter().enumerate() {
        let left = yielded - step;
        assert!(
            lower <= left,
            "{name}: step {step}: lower {lower} > {left} left"
        );
        assert!(
            upper.is_none_or(|upper| left <= upper),
            "{name}: step {step}: upper {upper:?} < {left} left"
        );
    }
    assert!(s.is_terminated(), "{name}: not terminated after its end");
    assert_eq!(s.size_hint(), (0, Some(0)), "{name}: hint after its end");
    assert!(s.next().await.is_none(), "{name}: polled after its end");
    yielded
}

async fn slow(x: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(u64::from(x % 7))).await;
    x
}

async fn fallible(x: u32) -> Result<u32, Fail> {
    tokio::time::sleep(Duration::from_millis(u64::from(x % 5))).await;
    if x == 30 { Err(Fail::Item(x)) } else { Ok(x) }
}

#[tokio::test(start_paused = true)]
async fn pool_streams_are_fused_with_honest_size_hints() {
    let n = drain_checked("par_map", stream::iter(0..50).par_map(3, slow)).await;
    assert_eq!(n, 50);
    let n = drain_checked(
        "par_map_unordered",
        stream::iter(0..50).par_map_unordered(3, slow),
    )
    .await;
    assert_eq!(n, 50);
    let keyed = stream::iter(0..50).par_map_keyed(3, |x| x % 4, slow);
    assert_eq!(drain_checked("par_map_keyed", keyed).await, 50);
    let ordered = stream::iter(0..50).map(Ok).try_par_map(3, fallible);
    assert_eq!(drain_checked("try_par_map", ordered).await, 31);
    let unordered = stream::iter(0..50)
        .map(Ok)
        .try_par_map_unordered(3, fallible);
    drain_checked("try_par_map_unordered", unordered).await;
    // A context can stop the pool early: no lower bound then.
    let ctx = TaskContext::background();
    let bound = stream::iter(0..50).par_map(Workers::new(3).context(&ctx), slow);
    assert_eq!(bound.size_hint(), (0, Some(50)));
    assert_eq!(drain_checked("par_map with a context", bound).await, 50);
}

#[tokio::test]
async fn an_exact_source_gives_an_exact_hint_when_nothing_can_stop_the_pool() {
    let s = stream::iter(0..10).par_map(2, |x| async move { x });
    assert_eq!(s.size_hint(), (10, Some(10)));
    let s = stream::iter(0..10).map(Ok).try_par_map(2, fallible);
    assert_eq!(
        s.size_hint(),
        (0, Some(11)),
        "one more for a context's error"
    );
}

#[tokio::test]
async fn pool_futures_are_fused() {
    let mut run = stream::iter(0..10).par_for_each(2, |_| async {});
    assert!(!run.is_terminated());
    (&mut run).await;
    assert!(run.is_terminated());
    let mut run = stream::iter(0..10)
        .map(Ok)
        .try_par_for_each(2, |x| async move {
            if x == 5 { Err(Fail::Item(x)) } else { Ok(()) }
        });
    assert_eq!((&mut run).await, Err(Fail::Item(5)));
    assert!(run.is_terminated());
}

/// A source that counts how many items were pulled from it.
fn counted(n: u32) -> (impl Stream<Item = u32> + Send + Unpin, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let source = stream::iter(0..n).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (source, pulled)
}

#[tokio::test(start_paused = true)]
async fn workers_buffer_size_is_what_the_operator_pulls_ahead() {
    for workers in [
        Workers::new(2),
        Workers::new(3).buffer(5),
        Workers::new(200),
    ] {
        let ahead = workers.count() + workers.buffer_size();
        let (source, pulled) = counted(10_000);
        // The head item never finishes: intake stops at the window.
        let mut s = source.par_map(workers, |x| async move {
            if x == 0 {
                std::future::pending::<()>().await;
            }
            x
        });
        assert!(
            tokio::time::timeout(Duration::from_secs(1), s.next())
                .await
                .is_err()
        );
        assert_eq!(pulled.load(Ordering::SeqCst), ahead);
    }
    assert_eq!(Workers::new(2).buffer_size(), 256);
    assert_eq!(Workers::new(200).buffer_size(), 400);
}

#[tokio::test]
async fn a_pool_built_inside_a_scope_is_bound_to_that_context() {
    let ctx = TaskContext::background();
    let (plain, fallible_pool) = ctx
        .scope(async {
            let plain = stream::iter(0..100).par_map(2, |x| async move { x });
            let fallible_pool = stream::iter(0..100)
                .map(Ok::<_, Fail>)
                .try_par_map(2, |x| async move { Ok(x) });
            (plain, fallible_pool)
        })
        .await;
    assert!(plain.task_context().is_some());
    ctx.cancel();
    assert_eq!(plain.count().await, 0, "stopped by the ambient context");
    let out: Vec<_> = fallible_pool.collect().await;
    assert_eq!(out, [Err(Fail::Stopped(ContextError::Cancelled))]);
}

#[tokio::test]
async fn a_pool_built_with_no_context_has_none() {
    let s = stream::iter(0..3).par_map(2, |_| async { TaskContext::current().is_some() });
    assert!(s.task_context().is_none());
    assert_eq!(s.collect::<Vec<_>>().await, [false; 3]);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A delivery from a queue, as a source of `Result`s yields it.
struct Delivery(u32);

/// Each pool operator held across an `.await` in an `async fn` over an
/// `impl Stream`: the future a service spawns must be `Send`.
async fn plain_pools(source: impl Stream<Item = Delivery> + Send + 'static) -> usize {
    let mapped = source.par_map(2, |d| async move { d.0 });
    let unordered = mapped.par_map_unordered(2, |x| async move { x + 1 });
    let keyed = unordered.par_map_keyed(2, |x| x % 3, |x| async move { x });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    keyed
        .par_for_each(2, move |x| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(x);
            }
        })
        .await;
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .count()
        .await
}

async fn fallible_pools(
    source: impl Stream<Item = Result<Delivery, BoxError>> + Send + 'static,
) -> Result<(), BoxError> {
    source
        .try_par_map(2, |d| async move { Ok::<_, BoxError>(d.0) })
        .try_par_map_unordered(2, |x| async move { Ok(x + 1) })
        .try_par_for_each(2, |_| async { Ok(()) })
        .await
}

/// A queue consumer: a pool of fallible handlers over deliveries, drained.
async fn handle_deliveries(
    source: impl Stream<Item = Result<Delivery, BoxError>> + Send + 'static,
) {
    source
        .par_map_unordered(2, |d| async move {
            let d = d?;
            Ok::<_, BoxError>(d.0)
        })
        .for_each(|_| async {})
        .await
}

/// The same with a fail-fast pool.
async fn handle_deliveries_fail_fast(
    source: impl Stream<Item = Result<Delivery, BoxError>> + Send + 'static,
) {
    source
        .try_par_map_unordered(2, |d| async move {
            let _ = d.0;
            Ok::<_, BoxError>(())
        })
        .for_each(|_| async {})
        .await
}

/// The defect: with the mapping's impls bounded by `'static`, the compiler
/// could not prove such a future `Send` ("higher-ranked lifetime error").
#[tokio::test]
async fn pools_held_across_an_await_in_a_spawned_async_fn_are_send() {
    let plain = stream::iter((0..10).map(Delivery));
    assert_eq!(tokio::spawn(plain_pools(plain)).await.unwrap(), 10);
    let fallible = stream::iter((0..10).map(|x| Ok(Delivery(x))));
    assert!(
        tokio::spawn(fallible_pools(fallible))
            .await
            .unwrap()
            .is_ok()
    );
    let deliveries = stream::iter((0..10).map(|x| Ok(Delivery(x))));
    tokio::spawn(handle_deliveries(deliveries)).await.unwrap();
    let deliveries = stream::iter((0..10).map(|x| Ok(Delivery(x))));
    tokio::spawn(handle_deliveries_fail_fast(deliveries))
        .await
        .unwrap();
}
