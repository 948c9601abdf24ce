//! Every test that captures `tracing` output, in a binary of its own.
//!
//! tracing caches, per callsite and for the whole process, whether any
//! subscriber is interested. A test thread that hits a callsite while another
//! test's scoped subscriber comes or goes can leave the cache saying "never"
//! for the subscriber that is installed now, and that test then sees no span:
//! `jobs_log_inside_a_span_naming_the_pool_and_the_worker` failed about one
//! full run in five that way. Here nothing else runs in the process, and
//! [`captured`] serializes the tests: each installs its subscriber, rebuilds
//! the cache, and runs alone on a current-thread runtime of its own (so every
//! task it spawns runs on the thread where the subscriber is the default).

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{StreamExt, stream};
use tokio_conc::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Held by the test that has a subscriber installed.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed test poisons it; the next one still runs alone.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `test` alone, with `subscriber` the default on this thread and the
/// interest cache rebuilt for it, on a current-thread runtime.
fn captured<S, F>(subscriber: S, test: impl FnOnce() -> F) -> F::Output
where
    S: tracing::Subscriber + Send + Sync + 'static,
    F: Future,
{
    let _alone = one_at_a_time();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), test())
                .await
                .expect("the traced test hung")
        });
        // Let the runtime's tasks finish logging before the subscriber goes.
        drop(runtime);
        out
    })
}

/// Collects what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Records each new span as `name{field=value ...}`.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(format!(
            "{}{{{}}}",
            attrs.metadata().name(),
            fields.0.trim()
        ));
    }
}

#[test]
fn each_worker_runs_in_a_span_naming_the_pool_and_its_index() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let names: Vec<&'static str> = captured(subscriber, || {
        stream::iter(0..10)
            .par_map(Workers::new(2).name("resize"), |_| async {
                tracing::Span::current()
                    .metadata()
                    .map_or("none", |m| m.name())
            })
            .collect()
    });
    assert_eq!(names, vec!["worker"; 10]);
    let spans = spans.0.lock().unwrap();
    assert!(
        spans.contains(&"worker{pool=resize index=0}".to_string()),
        "{spans:?}"
    );
    assert!(
        spans.contains(&"worker{pool=resize index=1}".to_string()),
        "{spans:?}"
    );
}

#[path = "support/span_values.rs"]
mod span_values;
use span_values::SessionId;

#[test]
fn logs_inside_a_spawned_task_carry_the_context_values() {
    let logs = Logs::default();
    captured(logs.subscriber(), || async {
        let ctx = TaskContext::background().with_span_value(SessionId(42));
        ctx.spawn(async { tracing::info!("charging card") })
            .await
            .unwrap();
    });
    let logs = logs.text();
    assert!(logs.contains("charging card"), "{logs}");
    assert!(logs.contains("session_id=42"), "{logs}");
}

#[test]
fn jobs_log_inside_a_span_naming_the_pool_and_the_worker() {
    let logs = Logs::default();
    captured(logs.subscriber(), || async {
        let pool = WorkerPool::new(Workers::new(1).name("thumbnails"));
        let job = async { tracing::info!("resizing") };
        let handle = pool.submit(job).await.unwrap();
        handle.await.unwrap();
    });
    let logs = logs.text();
    assert!(
        logs.contains("worker{pool=thumbnails worker=0}: ") && logs.contains("resizing"),
        "{logs}"
    );
}
