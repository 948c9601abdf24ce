//! What a `TaskContext` costs next to the bare `CancellationToken` it wraps.
//!
//! `cargo bench --bench context`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio_conc::context::TaskContext;
use tokio_util::sync::CancellationToken;

/// The value the lookups search for.
struct Wanted(#[allow(dead_code)] u64);
/// Values that sit between the lookup and `Wanted`.
struct Filler(#[allow(dead_code)] u64);

/// A chain of `depth` contexts: the value looked up sits at the root, under
/// `depth - 1` contexts that carry other values, so a lookup walks the chain.
fn chain(depth: usize) -> TaskContext {
    let mut ctx = TaskContext::background().with_value(Wanted(7));
    for i in 1..depth {
        ctx = ctx.with_value(Filler(i as u64));
    }
    ctx
}

fn derive(c: &mut Criterion) {
    let mut group = c.benchmark_group("context/derive");
    let token = CancellationToken::new();
    group.bench_function("baseline: CancellationToken::child_token", |b| {
        b.iter(|| black_box(token.child_token()))
    });
    let ctx = TaskContext::background();
    group.bench_function("TaskContext::child", |b| b.iter(|| black_box(ctx.child())));
    group.bench_function("TaskContext::with_value", |b| {
        b.iter(|| black_box(ctx.with_value(Wanted(1))))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    group.bench_function("TaskContext::with_timeout (lazy: no timer)", |b| {
        b.iter(|| black_box(ctx.with_timeout(Duration::from_secs(60))))
    });
    group.bench_function(
        "TaskContext::with_timeout + token (arms a timer task)",
        |b| {
            b.iter(|| {
                let timed = ctx.with_timeout(Duration::from_secs(60));
                black_box(timed.token());
                timed
            })
        },
    );
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("context/value");
    for depth in [1, 8, 32] {
        let ctx = chain(depth);
        group.bench_with_input(BenchmarkId::from_parameter(depth), &ctx, |b, ctx| {
            b.iter(|| black_box(ctx.value::<Wanted>()))
        });
    }
    group.finish();
}

fn is_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("context/is_cancelled");
    let token = CancellationToken::new().child_token();
    group.bench_function("baseline: CancellationToken::is_cancelled", |b| {
        b.iter(|| black_box(token.is_cancelled()))
    });
    for depth in [1, 32] {
        let ctx = chain(depth);
        group.bench_with_input(BenchmarkId::new("TaskContext", depth), &ctx, |b, ctx| {
            b.iter(|| black_box(ctx.is_cancelled()))
        });
    }
    // A deadline is checked against the clock on every look.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let timed = chain(1).with_timeout(Duration::from_secs(3600));
    group.bench_function("TaskContext with a deadline", |b| {
        b.iter(|| black_box(timed.is_cancelled()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = derive, lookup, is_cancelled
}
criterion_main!(benches);
