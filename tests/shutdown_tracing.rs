//! The events a shutdown logs. A binary of its own, with one test: tracing's
//! interest cache is process-global, and a test capturing logs next to others
//! could flake.

use std::time::Duration;

use tokio_conc::prelude::*;

/// One event when draining starts, one per aborted task naming it, and none
/// for the tasks that ended in time; tasks run inside a span with their name.
#[tokio::test(start_paused = true)]
async fn draining_and_every_aborted_task_are_logged_by_name() {
    // The log goes to a file of this process's own, read back at the end.
    let path = std::env::temp_dir().join(format!(
        "tokio-conc-shutdown-tracing-{}.log",
        std::process::id()
    ));
    let file = std::fs::File::create(&path).expect("create the log file");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(file)
        .with_ansi(false)
        .without_time()
        .finish();
    // The runtime runs every task on this thread, under this default.
    let default = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

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

    let logs = std::fs::read_to_string(&path).expect("read the log file");
    let _ = std::fs::remove_file(&path);
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
