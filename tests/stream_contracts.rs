//! Every stream the crate returns outside the pool operators is a
//! `FusedStream` with an honest `size_hint`: at every step the bounds hold
//! what is really still to come, and an ended stream says `(0, Some(0))`.

use std::time::Duration;

use futures::stream::{self, FusedStream};
use futures::{Stream, StreamExt};
use tokio_conc::generator::Yielder;
use tokio_conc::prelude::*;

const LONG: Duration = Duration::from_secs(10);
const ITEMS: u32 = 10;

type Checked = Box<dyn FusedStream<Item = u32> + Send + Unpin>;

fn source() -> impl Stream<Item = u32> + Send + Unpin + 'static {
    stream::iter(0..ITEMS)
}

fn boxed<S>(s: S) -> Checked
where
    S: FusedStream<Item = u32> + Send + Unpin + 'static,
{
    Box::new(s)
}

/// Drains `s`, checking its hint before every poll against what really came
/// after, and its end. Returns the hints and how many items it yielded.
async fn drain(name: &str, mut s: Checked) -> (Vec<(usize, Option<usize>)>, usize) {
    let mut hints = Vec::new();
    let mut yielded = 0;
    loop {
        assert!(!s.is_terminated(), "{name}: terminated before its end");
        hints.push(s.size_hint());
        let next = tokio::time::timeout(LONG, s.next())
            .await
            .unwrap_or_else(|_| panic!("{name} hung"));
        if next.is_none() {
            break;
        }
        yielded += 1;
    }
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
    assert_eq!(s.next().await, None, "{name}: polled after its end");
    (hints, yielded)
}

async fn drain_all(
    name: &str,
    branches: Vec<Checked>,
) -> Vec<(Vec<(usize, Option<usize>)>, usize)> {
    let mut out = Vec::new();
    for (i, branch) in branches.into_iter().enumerate() {
        out.push(drain(&format!("{name}[{i}]"), branch).await);
    }
    out
}

/// The defect: the fan-out branches ended without saying so in their hint
/// (`(0, None)` forever), and broadcast branches, which receive every item,
/// promised none.
#[tokio::test]
async fn fan_out_branches_are_fused_with_honest_hints() {
    let branches = source().fan_out(2).into_iter().map(boxed).collect();
    let drained = drain_all("fan_out", branches).await;
    assert_eq!(
        drained[0].0[0],
        (0, Some(ITEMS as usize)),
        "at most every item"
    );
    assert_eq!(drained.iter().map(|d| d.1).sum::<usize>(), ITEMS as usize);

    let branches = source().broadcast(2, 16).into_iter().map(boxed).collect();
    let drained = drain_all("broadcast", branches).await;
    for (hints, yielded) in &drained {
        assert_eq!(*yielded, ITEMS as usize);
        assert_eq!(hints[0], (ITEMS as usize, Some(ITEMS as usize)), "exact");
    }

    let lanes = source()
        .partition(2, |x: &u32| *x % 2)
        .into_iter()
        .map(boxed)
        .collect();
    let drained = drain_all("partition", lanes).await;
    assert_eq!(drained.iter().map(|d| d.1).sum::<usize>(), ITEMS as usize);
    // The first lane's pull filled the second: it knows what it holds.
    let (second, yielded) = &drained[1];
    assert_eq!(second[0].0, *yielded, "a lane promises what it holds");
}

/// With a context, a cancel drops what is buffered: nothing is promised.
#[tokio::test]
async fn a_bound_context_takes_back_the_promise() {
    let ctx = TaskContext::background();
    let branches = ctx
        .scope(async { source().broadcast(2, 16) })
        .await
        .into_iter()
        .map(boxed)
        .collect();
    let drained = drain_all("broadcast in a scope", branches).await;
    assert_eq!(drained[0].0[0], (0, Some(ITEMS as usize)));

    let s = ctx.scope(async { source().prefetch(16) }).await;
    tokio::task::yield_now().await;
    let (hints, _) = drain("prefetch in a scope", boxed(s)).await;
    assert_eq!(hints[0].0, 0);
}

#[tokio::test]
async fn generators_and_prefetch_are_fused_with_honest_hints() {
    let lazy = generate(|y| async move {
        for i in 0..ITEMS {
            y.send(i).await?;
        }
        Ok(())
    });
    drain("generate", boxed(lazy)).await;

    let fallible = try_generate(|y: Yielder<u32>| async move {
        for i in 0..ITEMS {
            y.send(i).await.map_err(|_| ())?;
        }
        Ok(())
    })
    .map(|item: Result<u32, ()>| item.unwrap());
    drain("try_generate", boxed(fallible)).await;

    let ahead = generate_ahead(16, |y| async move {
        for i in 0..ITEMS {
            y.send(i).await?;
        }
        Ok(())
    });
    tokio::task::yield_now().await; // the producer fills the buffer
    let (hints, _) = drain("generate_ahead", boxed(ahead)).await;
    assert_eq!(
        hints[0].0, ITEMS as usize,
        "the buffered items are promised"
    );

    let prefetched = source().prefetch(16);
    tokio::task::yield_now().await;
    let (hints, _) = drain("prefetch", boxed(prefetched)).await;
    assert_eq!(
        hints[0].0, ITEMS as usize,
        "the buffered items are promised"
    );
}

#[cfg(feature = "rate")]
#[tokio::test(start_paused = true)]
async fn rate_limit_streams_are_fused_with_honest_hints() {
    let (hints, _) = drain(
        "rate_limit",
        boxed(source().rate_limit(Rate::per_second(1000))),
    )
    .await;
    assert_eq!(hints[0], (ITEMS as usize, Some(ITEMS as usize)));
    drain(
        "rate_limit_by",
        boxed(source().rate_limit_by(|x: &u32| *x % 3, Rate::per_second(1000))),
    )
    .await;
    drain(
        "drop_over_quota",
        boxed(
            source()
                .rate_limit(Rate::per_second(1).burst(3))
                .drop_over_quota(),
        ),
    )
    .await;
}
