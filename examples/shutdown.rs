//! A small service with a graceful shutdown — Go's `signal.NotifyContext`
//! plus `http.Server.Shutdown(ctx)`, in one type.
//!
//! Requests come from a generator, rate limited; a pool of 4 workers handles
//! them; a sink records each response and hands a receipt to a long-lived
//! `WorkerPool` (the mailer). On Ctrl-C (or SIGTERM, or after `--after
//! SECONDS`) the source closes, every stage drains what it holds, the sink
//! closes and joins the mailer, and the report says whether anything had to
//! be aborted. `--stuck` adds a task that ignores the drain, to see one named.
//!
//! Run with `cargo run --example shutdown -- --after 2` (or without flags, and
//! press Ctrl-C; a second Ctrl-C skips the grace period).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_conc::prelude::*;

const GRACE: Duration = Duration::from_secs(3);

struct Options {
    after: Option<Duration>,
    stuck: bool,
}

fn options() -> Options {
    let mut options = Options {
        after: None,
        stuck: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--after" => {
                let seconds: f64 = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--after takes a number of seconds");
                options.after = Some(Duration::from_secs_f64(seconds));
            }
            "--stuck" => options.stuck = true,
            other => panic!("unknown argument {other:?}; try --after SECONDS, --stuck"),
        }
    }
    options
}

/// Handling a request takes 20 to 80 ms.
async fn handle(request: u64) -> String {
    tokio::time::sleep(Duration::from_millis(20 + request * 37 % 61)).await;
    format!("response to request {request}")
}

#[tokio::main]
async fn main() {
    let options = options();
    // The shutdown logs when draining starts, each signal, and each task it
    // had to abort.
    tracing_subscriber::fmt().with_target(false).init();
    // Go: ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
    let shutdown = Shutdown::new().on_signals();

    // The source: endless requests, 20 a second, closed when draining begins.
    let requests = generate(|y: Yielder<u64>| async move {
        for request in 1.. {
            y.send(request).await?;
        }
        Ok::<(), Closed>(())
    })
    .rate_limit(Rate::per_second(20).burst(5))
    .close_on(&shutdown);

    // The handlers: 4 workers, bound to the shutdown's context, so the abort
    // phase would stop them.
    let responses = requests.par_map_unordered(
        Workers::new(4).context(shutdown.context()).name("handler"),
        handle,
    );

    // The mailer: a long-lived pool for receipts, bound to the context too.
    let mailer = WorkerPool::new(Workers::new(2).context(shutdown.context()).name("mailer"));

    // The sink: records each response and mails a receipt. When the stream
    // ends (the source closed, every handler finished), it closes the mailer
    // and waits for the last receipts: stages drain in order, upstream first.
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    shutdown.spawn("sink", async move {
        let mut responses = std::pin::pin!(responses);
        while let Some(response) = responses.next().await {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 20 == 0 {
                println!("served {n} ({response})");
            }
            let receipt = tokio::time::sleep(Duration::from_millis(30));
            // The handle is dropped: the job runs anyway, and `join` waits for it.
            drop(
                mailer
                    .submit(receipt)
                    .await
                    .expect("open until the sink closes it"),
            );
        }
        println!("draining: every handler finished; closing the mailer");
        mailer.join().await;
        println!(
            "draining: every receipt sent ({} in all)",
            mailer.stats().completed
        );
    });

    let draining = shutdown.draining();
    tokio::spawn(async move {
        draining.await;
        println!("draining: the source is closed");
    });

    if options.stuck {
        // Ignores the drain: the grace period runs out and it is aborted.
        shutdown.spawn("metrics-exporter", async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    match options.after {
        Some(after) => {
            println!("serving for {after:?} (or until Ctrl-C)");
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                trigger.trigger();
            });
        }
        None => println!("serving until Ctrl-C (twice to skip the grace period)"),
    }

    let report = shutdown.wait(GRACE).await;
    println!(
        "served {} requests; {report}",
        served.load(Ordering::Relaxed)
    );
    for task in report.aborted() {
        println!("had to abort: {task}");
    }
}
