//! `Pipeline`'s spans: each call runs inside a `stage` span naming its stage.
//! One test in its own binary: a scoped subscriber and tracing's global
//! interest cache do not mix with tests running beside it.

mod common;

use futures::TryStreamExt;
use tokio_conc::pipeline::BoxError;
use tokio_conc::prelude::*;

#[test]
fn calls_log_inside_a_span_naming_their_stage() {
    // The log goes to a file, read back at the end. A current-thread
    // runtime: every worker runs on this thread, under the subscriber set
    // for it.
    let (_guard, path) = common::log_to_file("pipeline-tracing");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out: Vec<u32> = runtime.block_on(async {
        let pipeline: Pipeline<u32, BoxError> = Pipeline::new(futures::stream::iter(1..=3_u32))
            .stage(
                Stage::new("parse").workers(2).skip_errors(),
                |n| async move {
                    tracing::info!(n, "parsing");
                    if n == 2 {
                        Err("two is bad".into())
                    } else {
                        Ok(n)
                    }
                },
            )
            .stage("store", |n| async move {
                tracing::info!(n, "storing");
                Ok(n)
            });
        pipeline.try_collect().await.unwrap()
    });
    assert_eq!(out, [1, 3]);
    let logs = common::read_logs(&path);
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"))
            .to_string()
    };
    assert!(line("parsing n=1").contains("stage{stage=parse}"), "{logs}");
    assert!(line("parsing n=1").contains("worker{pool=parse"), "{logs}");
    assert!(line("storing n=3").contains("stage{stage=store}"), "{logs}");
    let skipped = line("item skipped");
    assert!(
        skipped.contains("WARN") && skipped.contains("stage{stage=parse}"),
        "{logs}"
    );
    assert!(skipped.contains("two is bad"), "{logs}");
}
