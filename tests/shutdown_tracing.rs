//! The events a shutdown logs. A binary of its own, with one test: tracing's
//! interest cache is process-global, and a test capturing logs next to others
//! could flake.

mod common;

use std::time::Duration;

use tokio_conc::prelude::*;

/// One event when draining starts, one per aborted task naming it, and none
/// for the tasks that ended in time; tasks run inside a span with their name.
#[tokio::test(start_paused = true)]
async fn draining_and_every_aborted_task_are_logged_by_name() {
    let (default, path) = common::log_to_file("shutdown-tracing");

    let shutdown = Shutdown::new();
    let draining = shutdown.draining();
    shutdown.spawn("polite", async move {
        draining.await;
        tracing::info!("flushing");
    });
    shutdown.spawn("stubborn", std::future::pending::<()>());
    shutdown.spawn("hung", std::future::pending::<()>());
    shutdown.trigger();
    shutdown.trigger();
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        shutdown.wait(Duration::from_secs(1)),
    )
    .await
    .expect("wait hung");
    assert_eq!(report.aborted(), ["stubborn", "hung"]);
    drop(default);

    let logs = common::read_logs(&path);
    assert_eq!(
        logs.matches("draining started").count(),
        1,
        "one event for the drain: {logs}"
    );
    assert!(logs.contains("tasks=3"), "{logs}");
    let aborted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("aborting a task"))
        .collect();
    assert_eq!(aborted.len(), 2, "{logs}");
    assert!(
        aborted.iter().any(|l| l.contains("task=stubborn")),
        "{logs}"
    );
    assert!(aborted.iter().any(|l| l.contains("task=hung")), "{logs}");
    assert!(!logs.contains("task=polite"), "{logs}");
    assert!(
        logs.contains("task{name=polite}") && logs.contains("flushing"),
        "{logs}"
    );
}
