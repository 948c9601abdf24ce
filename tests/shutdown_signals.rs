//! `Shutdown::on_signals`, with real signals sent to this very process. A
//! binary of its own, with one test: signal handlers are process-global, and a
//! signal sent while no handler is installed would end the process.

#![cfg(unix)]

use std::process::Command;
use std::time::Duration;

use tokio_conc::prelude::*;

/// Sends `signal` to this process with `kill`, as an operator would.
fn send(signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed: {status}");
}

/// The first signal (SIGTERM) starts the drain without cancelling anything;
/// the second (SIGINT, as a second Ctrl-C) skips the grace period, so the
/// stuck task is aborted at once instead of after an hour. Real time: a paused
/// clock would jump over the grace period while the test waits for the
/// signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_starts_the_drain_and_a_second_one_skips_the_grace_period() {
    let limit = Duration::from_secs(30);
    let shutdown = Shutdown::new().on_signals(); // handlers installed on return
    let draining = shutdown.draining();
    let polite = shutdown.spawn("polite", draining);
    shutdown.spawn("stuck", std::future::pending::<()>());

    send("TERM");
    tokio::time::timeout(limit, shutdown.draining())
        .await
        .expect("draining after SIGTERM hung");
    assert!(shutdown.is_draining());
    assert!(
        !shutdown.context().is_cancelled(),
        "draining is not cancelling"
    );
    tokio::time::timeout(limit, polite)
        .await
        .expect("the polite task hung")
        .unwrap();

    let waiting = tokio::spawn(shutdown.wait(Duration::from_secs(3_600)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "still inside the grace period");
    send("INT");
    let report = tokio::time::timeout(limit, waiting)
        .await
        .expect("the second signal did not skip the grace period")
        .unwrap();
    assert_eq!(report.aborted(), ["stuck"]);
    assert!(report.drain_time() < Duration::from_secs(3_600));
    assert!(shutdown.context().is_cancelled());
}
