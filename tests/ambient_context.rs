//! One rule for the ambient context: every operator and type built without
//! `.context(&ctx)` inherits `TaskContext::current()` at construction, and so
//! stops when that context is cancelled — whichever operator it is.

use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tokio_conc::generator::{Closed, Yielder};
use tokio_conc::prelude::*;

/// Long enough that only a hang reaches it.
const LONG: Duration = Duration::from_secs(10);

/// A finite source, so that an operator that ignores the context ends anyway
/// (and the test fails on the count instead of hanging).
fn source() -> impl Stream<Item = u32> + Send + 'static {
    stream::iter(0..100_u32)
}

fn merged<S>(branches: Vec<S>) -> BoxStream<'static, u32>
where
    S: Stream<Item = u32> + Send + Unpin + 'static,
{
    stream::select_all(branches).boxed()
}

type Build = fn() -> BoxStream<'static, u32>;

/// Every stream operator that takes a context, built with none given.
fn operators() -> Vec<(&'static str, Build)> {
    #[allow(unused_mut)]
    let mut operators: Vec<(&'static str, Build)> = vec![
        ("par_map", || {
            source().par_map(2, |x| async move { x }).boxed()
        }),
        ("par_map_unordered", || {
            source().par_map_unordered(2, |x| async move { x }).boxed()
        }),
        ("fan_out", || merged(source().fan_out(2))),
        ("broadcast", || merged(source().broadcast(2, 4))),
        ("partition", || merged(source().partition(2, |x: &u32| *x))),
        ("partition_with", || {
            merged(source().partition_with(2, 4, |x: &u32| *x))
        }),
        ("prefetch", || source().prefetch(4).boxed()),
        ("generate", || {
            generate(|y: Yielder<u32>| async move {
                for i in 0..100 {
                    y.send(i).await?;
                }
                Ok(())
            })
            .boxed()
        }),
        ("try_generate", || {
            try_generate(|y: Yielder<u32>| async move {
                for i in 0..100 {
                    y.send(i).await?;
                }
                Ok(())
            })
            .filter_map(|r: Result<u32, Closed>| async move { r.ok() })
            .boxed()
        }),
        ("generate_ahead", || {
            generate_ahead(4, |y: Yielder<u32>| async move {
                for i in 0..100 {
                    y.send(i).await?;
                }
                Ok(())
            })
            .boxed()
        }),
    ];
    #[cfg(feature = "rate")]
    operators.extend::<[(&'static str, Build); 4]>([
        ("rate_limit", || {
            source().rate_limit(Rate::per_second(1000)).boxed()
        }),
        ("rate_limit_shared", || {
            let limiter = RateLimiter::new(Rate::per_second(1000));
            source().rate_limit_shared(&limiter).boxed()
        }),
        ("rate_limit_weighted", || {
            source()
                .rate_limit_weighted(Rate::per_second(1000), |_| 1)
                .boxed()
        }),
        ("rate_limit_by", || {
            source()
                .rate_limit_by(|x: &u32| *x % 3, Rate::per_second(1000))
                .boxed()
        }),
    ]);
    operators
}

/// The defect: built inside `ctx.scope(..)`, then `ctx` cancelled, `par_map`
/// yielded nothing but `fan_out` and `prefetch` yielded every item.
#[tokio::test]
async fn every_operator_built_inside_a_scope_stops_when_its_context_is_cancelled() {
    let mut wrong = Vec::new();
    for (name, build) in operators() {
        let ctx = TaskContext::background();
        let stream = ctx.scope(async move { build() }).await;
        ctx.cancel();
        let got = tokio::time::timeout(LONG, stream.count())
            .await
            .unwrap_or_else(|_| panic!("{name} hung"));
        if got != 0 {
            wrong.push(format!("{name} yielded {got} items"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

/// The same operators built outside any scope have no context: cancelling an
/// unrelated context does nothing to them.
#[tokio::test]
async fn every_operator_built_outside_a_scope_runs_to_the_end() {
    for (name, build) in operators() {
        let unrelated = TaskContext::background();
        let stream = build();
        unrelated.cancel();
        let got = tokio::time::timeout(LONG, stream.count())
            .await
            .unwrap_or_else(|_| panic!("{name} hung"));
        let expected = if name == "broadcast" { 200 } else { 100 };
        assert_eq!(got, expected, "{name}");
    }
}

/// An explicit `.context(&ctx)` wins over the ambient one, both ways.
#[tokio::test]
async fn an_explicit_context_replaces_the_ambient_one() {
    let ambient = TaskContext::background();
    let explicit = TaskContext::background();
    let streams: Vec<(&str, BoxStream<'static, u32>)> = ambient
        .scope(async {
            let branches = fan_out_with(&explicit);
            #[allow(unused_mut)]
            let mut streams: Vec<(&str, BoxStream<'static, u32>)> = vec![
                ("fan_out", branches),
                ("prefetch", source().prefetch(4).context(&explicit).boxed()),
                (
                    "generate",
                    generate(|y: Yielder<u32>| async move {
                        for i in 0..100 {
                            y.send(i).await?;
                        }
                        Ok(())
                    })
                    .context(&explicit)
                    .boxed(),
                ),
                (
                    "generate_ahead",
                    generate_ahead(4, |y: Yielder<u32>| async move {
                        for i in 0..100 {
                            y.send(i).await?;
                        }
                        Ok(())
                    })
                    .context(&explicit)
                    .boxed(),
                ),
            ];
            #[cfg(feature = "rate")]
            streams.push((
                "rate_limit",
                source()
                    .rate_limit(Rate::per_second(1000))
                    .context(&explicit)
                    .boxed(),
            ));
            streams
        })
        .await;
    ambient.cancel();
    for (name, stream) in streams {
        let got = tokio::time::timeout(LONG, stream.count())
            .await
            .unwrap_or_else(|_| panic!("{name} hung"));
        assert_eq!(got, 100, "{name}: the ambient context was not replaced");
    }
}

fn fan_out_with(ctx: &TaskContext) -> BoxStream<'static, u32> {
    merged(source().fan_out(tokio_conc::fan_out::Branches::new(2).context(ctx)))
}

#[tokio::test]
async fn a_worker_pool_built_inside_a_scope_stops_with_its_context() {
    let ctx = TaskContext::background();
    let pool = ctx.scope(async { WorkerPool::new(2) }).await;
    assert!(!pool.is_closed());
    ctx.cancel();
    assert!(pool.is_closed());
    assert!(pool.context().is_cancelled());
    let rejected = pool.submit(async {}).await.unwrap_err();
    assert_eq!(rejected.context_error(), Some(&ContextError::Cancelled));
}

#[cfg(feature = "rate")]
#[tokio::test(start_paused = true)]
async fn rate_limiters_built_inside_a_scope_stop_with_its_context() {
    let ctx = TaskContext::background();
    let (limiter, keyed) = ctx
        .scope(async {
            (
                RateLimiter::new(Rate::per_second(1)),
                KeyedRateLimiter::<u8>::new(Rate::per_second(1)),
            )
        })
        .await;
    assert!(limiter.task_context().is_some());
    assert!(keyed.task_context().is_some());
    ctx.cancel();
    let err = limiter.until_ready().await.unwrap_err();
    assert_eq!(err.context_error(), Some(&ContextError::Cancelled));
    let err = keyed.until_key_ready(&1).await.unwrap_err();
    assert_eq!(err.context_error(), Some(&ContextError::Cancelled));
}

#[tokio::test]
async fn builders_report_the_context_they_will_use() {
    let ctx = TaskContext::background();
    ctx.scope(async {
        let s = source().prefetch(2);
        assert!(s.task_context().is_some());
        let g = generate(|y: Yielder<u8>| async move {
            y.send(1).await?;
            Ok(())
        });
        assert!(g.task_context().is_some());
        #[cfg(feature = "rate")]
        assert!(
            source()
                .rate_limit(Rate::per_second(5))
                .task_context()
                .is_some()
        );
    })
    .await;
    let s = source().prefetch(2);
    assert!(s.task_context().is_none());
}

/// Checks the one shape of "stopped by a context": `context_error()` gives
/// the context's error, and so does `source()`.
fn stopped_by(
    name: &str,
    err: &(dyn std::error::Error + 'static),
    via_method: Option<&ContextError>,
) {
    let expected = ContextError::DeadlineExceeded;
    assert_eq!(via_method, Some(&expected), "{name}: context_error()");
    let source = err
        .source()
        .and_then(|source| source.downcast_ref::<ContextError>());
    assert_eq!(source, Some(&expected), "{name}: source()");
}

/// Every error a context can cause says so the same way.
#[tokio::test(start_paused = true)]
async fn every_error_a_context_causes_reports_it_the_same_way() {
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));

    // generator: Closed
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = generate(|y| async move {
        let _ = tx.send(y.send(1_u8).await);
        Ok(())
    })
    .context(&ctx);
    assert_eq!(s.count().await, 0);
    let closed = rx.await.unwrap().unwrap_err();
    stopped_by("Closed", &closed, closed.context_error());

    // worker pool: Rejected, JobError
    let soon = TaskContext::background().with_timeout(Duration::from_millis(1));
    let pool = WorkerPool::new(Workers::new(1).context(&soon));
    let handle = pool.submit(std::future::pending::<()>()).await.unwrap();
    let job = tokio::time::timeout(LONG, handle)
        .await
        .unwrap()
        .unwrap_err();
    stopped_by("JobError", &job, job.context_error());
    let dead = WorkerPool::new(Workers::new(1).context(&ctx));
    let rejected = dead.try_submit(async {}).unwrap_err();
    stopped_by("Rejected", &rejected, rejected.context_error());

    // rate limiting: RateLimitError
    #[cfg(feature = "rate")]
    {
        let limiter = RateLimiter::new(Rate::per_second(1)).context(&ctx);
        let err = limiter.until_ready().await.unwrap_err();
        stopped_by("RateLimitError", &err, err.context_error());
    }
}
