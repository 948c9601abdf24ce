//! Helpers shared by the fan-out suites (`fan_out`, `broadcast`, `partition`)
//! and the task accounting of the lifecycle suites (`shutdown`).

// Each suite uses its own subset.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Stream, StreamExt};
use proptest::prelude::*;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Long enough that only a hang reaches it.
pub const LONG: Duration = Duration::from_secs(10);

/// `items` as a stream, counting what was produced.
pub fn counted<I>(
    items: I,
) -> (
    impl Stream<Item = I::Item> + Send + 'static,
    Arc<AtomicUsize>,
)
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
{
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let source = futures::stream::iter(items).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (source, produced)
}

/// Whether `branch` has an item (or its end) ready without waiting.
pub async fn ready_now<S: Stream + Unpin>(branch: &mut S) -> Option<Option<S::Item>> {
    match futures::poll!(branch.next()) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

/// Yields `times` times, so that spawned branches get to poll (and park).
pub async fn yield_times(times: usize) {
    for _ in 0..times {
        tokio::task::yield_now().await;
    }
}

/// `first` polls a source that panics: the panic surfaces there, and `second`
/// then panics too, naming `operator`, instead of hanging.
pub async fn assert_the_source_panic_spreads<B>(mut first: B, mut second: B, operator: &str)
where
    B: Stream + Unpin + Send + 'static,
    B::Item: Send + Debug,
{
    let err = tokio::spawn(async move { first.next().await })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    let err = tokio::spawn(async move { second.next().await })
        .await
        .unwrap_err();
    let message = err.into_panic();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(
        message.contains(&format!("{operator}: the source panicked")),
        "{message}"
    );
    // Whichever branch's panic reaches the consumer first tells what
    // happened (every source in these suites panics with "source failed").
    assert!(message.contains("source failed"), "{message}");
}

/// A branch that waits on the lock while another polls a source that then
/// panics says the source's message, every time. `split` builds two branches
/// over a source whose first poll holds the lock a while (the other branch
/// is blocked on it by then) and panics with "source failed".
///
/// Regression (chaos seed 1795749805605384026): `broadcast` and `partition`
/// let the lock go — poisoning it — while the panic unwound, before the
/// message was kept; a branch woken by that saw no message, and the panic
/// that reached the consumer said only "the source panicked in another
/// branch".
pub fn assert_a_branch_blocked_on_a_panicking_poll_names_the_message<B>(
    operator: &str,
    split: impl Fn(futures::stream::BoxStream<'static, u32>) -> (B, B),
) where
    B: Stream + Unpin + Send + 'static,
{
    for round in 0..30 {
        let (inside_tx, inside_rx) = std::sync::mpsc::channel();
        let source = futures::stream::poll_fn(move |_| -> Poll<Option<u32>> {
            inside_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            panic!("source failed");
        })
        .boxed();
        let (mut first, mut second) = split(source);
        let first = std::thread::spawn(move || futures::executor::block_on(first.next()).is_some());
        inside_rx.recv().unwrap();
        let second =
            std::thread::spawn(move || futures::executor::block_on(second.next()).is_some());
        assert!(first.join().is_err(), "the first branch panicked");
        let payload = second.join().expect_err("the second branch panics too");
        let message = payload
            .downcast_ref::<String>()
            .expect("a message naming the operator");
        assert_eq!(
            message,
            &format!("{operator}: the source panicked in another branch: source failed"),
            "round {round}"
        );
    }
}

/// A runtime of its own for each property case, with two worker threads so
/// that branches really race.
pub fn two_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// The tasks' outputs, in order; a task that takes [`LONG`] is a hang.
pub async fn join_within<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(timeout(LONG, task).await.expect("hang").unwrap());
    }
    outputs
}

/// How a consumer task paces itself: `pace[n % pace.len()]` yields after its
/// n-th item.
#[derive(Clone, Debug)]
pub struct Consumer {
    pub pace: Vec<u8>,
}

impl Consumer {
    /// The pause after `received` items.
    pub async fn pause(&self, received: usize) {
        yield_times(self.pace[received % self.pace.len()].into()).await;
    }
}

pub fn consumer() -> impl Strategy<Value = Consumer> {
    proptest::collection::vec(0_u8..5, 1..8).prop_map(|pace| Consumer { pace })
}

/// A waker that counts its wake-ups.
#[derive(Debug, Default)]
pub struct WakeCounter(AtomicUsize);

impl WakeCounter {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl std::task::Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Task accounting: no task outlives what owns it.

/// The tasks alive on the current runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Lets the runtime run until `done` holds; fails instead of hanging.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if timeout(Duration::from_secs(60), wait).await.is_err() {
        panic!("timed out waiting until {what}");
    }
}

/// Awaits `fut`, or fails naming what hung. Under paused time the limit is
/// simulated, so it only trips once nothing else can happen.
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    timeout(Duration::from_secs(600), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// A source whose items come ready before their wake-up does, as a pool's
/// results do (a pool batches its wake-ups): [`push`](LateWake::push) adds an
/// item and wakes no one; [`wake_if_owed`](LateWake::wake_if_owed) wakes the
/// waker of the last poll if that poll returned `Pending` — the only wake-up
/// a `Stream` owes. A poll that returns an item owes none, so a consumer that
/// got `Pending` earlier is not woken for the items that came after it.
pub struct LateWake<T>(Arc<Mutex<LateWakeState<T>>>);

struct LateWakeState<T> {
    items: VecDeque<T>,
    ended: bool,
    owed: Option<Waker>,
}

impl<T> Clone for LateWake<T> {
    fn clone(&self) -> Self {
        LateWake(Arc::clone(&self.0))
    }
}

impl<T> LateWake<T> {
    pub fn new() -> Self {
        LateWake(Arc::new(Mutex::new(LateWakeState {
            items: VecDeque::new(),
            ended: false,
            owed: None,
        })))
    }

    /// Adds an item; wakes no one yet.
    pub fn push(&self, item: T) {
        self.0.lock().unwrap().items.push_back(item);
    }

    /// The late wake-up: only if the last poll returned `Pending`.
    pub fn wake_if_owed(&self) {
        let owed = self.0.lock().unwrap().owed.take();
        if let Some(waker) = owed {
            waker.wake();
        }
    }

    /// Ends the source, waking the last poll if it returned `Pending`.
    pub fn end(&self) {
        self.0.lock().unwrap().ended = true;
        self.wake_if_owed();
    }
}

impl<T> Stream for LateWake<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock().unwrap();
        if let Some(item) = state.items.pop_front() {
            state.owed = None;
            return Poll::Ready(Some(item));
        }
        if state.ended {
            state.owed = None;
            return Poll::Ready(None);
        }
        state.owed = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Polls `stream` once with a waker that counts its wake-ups.
pub fn poll_once<S: Stream + Unpin>(
    stream: &mut S,
    waker: &Arc<WakeCounter>,
) -> Poll<Option<S::Item>> {
    let waker = Waker::from(Arc::clone(waker));
    stream.poll_next_unpin(&mut Context::from_waker(&waker))
}

/// Counts the drops of the futures it is moved into.
pub struct DropCount(pub Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Log capture, for the tracing suites (each a test binary of its own).

/// Sends this thread's logs (no time, no colours) to a file of this
/// process's own, named after `suite`, until the guard is dropped; then
/// [`read_logs`] returns them. Rebuilds tracing's interest cache, so no
/// callsite keeps an interest cached before the subscriber was installed.
pub fn log_to_file(suite: &str) -> (tracing::subscriber::DefaultGuard, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("tokio-conc-{suite}-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).expect("create the log file");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(file)
        .with_ansi(false)
        .without_time()
        .finish();
    // A current-thread runtime runs every task on this thread, under this default.
    let default = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (default, path)
}

/// The logs written to `path` by [`log_to_file`]; removes the file.
pub fn read_logs(path: &std::path::Path) -> String {
    let logs = std::fs::read_to_string(path).expect("read the log file");
    let _ = std::fs::remove_file(path);
    logs
}
