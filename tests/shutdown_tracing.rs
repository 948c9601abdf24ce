//! The events a shutdown logs. A binary of its own, with one test: tracing's
//! interest cache is process-global, and a test capturing logs next to others
//! could flake.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_conc::prelude::*;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One event when draining starts, one per aborted task naming it, and none
/// for the tasks that ended in time; tasks run inside a span with their name.
#[test]
fn draining_and_every_aborted_task_are_logged_by_name() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
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
        });
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("draining started").count(),
        1,
        "one event for the drain: {logs}"
    );
    assert!(logs.contains("tasks=3"), "{logs}");
    let aborted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("aborted a task"))
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
