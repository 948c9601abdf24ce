//! Whether the pool operators really run CPU-bound calls in parallel.
//!
//! Not a speed test (speed lives in `benches/pool.rs`): it records when each
//! call started and ended and on which thread, and counts the calls that
//! overlapped in time with a call on another thread. Two workers that end up
//! taking turns on one runtime thread (a wake-up landing in a thread's LIFO
//! slot, which other threads cannot steal from) overlap nowhere; two workers
//! on two threads overlap almost everywhere, even on a loaded machine, where
//! the OS pausing a thread only stretches its call over more of the other's.

use std::collections::HashSet;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream};
use tokio_conc::prelude::*;

/// Two shapes of CPU-bound work: 100 calls of 1.5 ms, and 2,000 calls of
/// 20 µs — short enough that a worker woken into the LIFO slot of a thread
/// busy with another call stays there for most of a call, as a pool built
/// on a shared `Mutex<Receiver>` does (it overlaps on about 5% of such calls).
const SHAPES: [(u64, Duration); 2] = [
    (100, Duration::from_micros(1500)),
    (2_000, Duration::from_micros(20)),
];

/// One call's record: its thread and when it ran.
type Span = (ThreadId, Instant, Instant);

/// Spins for `busy` without awaiting: a CPU-bound call.
fn spin(busy: Duration) -> Span {
    let start = Instant::now();
    while start.elapsed() < busy {
        std::hint::spin_loop();
    }
    (std::thread::current().id(), start, Instant::now())
}

fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// How many calls overlapped in time with a call on another thread.
fn overlapping(spans: &[Span]) -> usize {
    spans
        .iter()
        .filter(|(ta, sa, ea)| {
            spans
                .iter()
                .any(|(tb, sb, eb)| ta != tb && sa < eb && sb < ea)
        })
        .count()
}

/// Runs `pipeline(jobs, busy)` for each shape of work in a spawned task (as
/// a service does: the consumer then shares a runtime thread with the
/// workers) and checks its calls overlapped.
fn assert_calls_overlap<S>(operator: &str, pipeline: fn(u64, Duration) -> S)
where
    S: Stream<Item = Span> + Send + 'static,
{
    for (jobs, busy) in SHAPES {
        assert_shape_overlaps(operator, jobs, busy, pipeline);
    }
}

/// Runs `pipeline(jobs, busy)` on a 2-thread runtime and returns its calls.
fn run_pipeline<S>(
    operator: &str,
    jobs: u64,
    busy: Duration,
    pipeline: fn(u64, Duration) -> S,
) -> Vec<Span>
where
    S: Stream<Item = Span> + Send + 'static,
{
    let rt = two_threads();
    let spans = rt.block_on(async {
        let consumer = tokio::spawn(async move { pipeline(jobs, busy).collect::<Vec<_>>().await });
        tokio::time::timeout(Duration::from_secs(60), consumer)
            .await
            .unwrap_or_else(|_| panic!("{operator} hung"))
            .expect("consumer")
    });
    assert_eq!(spans.len(), jobs as usize);
    spans
}

fn assert_shape_overlaps<S>(
    operator: &str,
    jobs: u64,
    busy: Duration,
    pipeline: fn(u64, Duration) -> S,
) where
    S: Stream<Item = Span> + Send + 'static,
{
    let spans = run_pipeline(operator, jobs, busy, pipeline);
    let threads: HashSet<_> = spans.iter().map(|(thread, _, _)| *thread).collect();
    let overlapped = overlapping(&spans);
    eprintln!(
        "{operator}, {jobs} calls of {busy:?}: {overlapped} overlapped, {} threads",
        threads.len()
    );
    // Running in parallel, nearly every call overlaps one on the other
    // thread; taking turns on one thread, none does.
    assert!(
        overlapped >= jobs as usize / 4,
        "{operator}: only {overlapped} of {jobs} CPU-bound calls of {busy:?} overlapped a call \
         on another thread ({} threads used): the workers took turns instead of running in \
         parallel",
        threads.len()
    );
}

#[test]
fn cpu_bound_calls_of_par_map_unordered_overlap_in_time() {
    assert_calls_overlap("par_map_unordered", |jobs, busy| {
        stream::iter(0..jobs).par_map_unordered(2, move |_| async move { spin(busy) })
    });
}

#[test]
fn cpu_bound_calls_of_par_map_overlap_in_time() {
    assert_calls_overlap("par_map", |jobs, busy| {
        stream::iter(0..jobs).par_map(2, move |_| async move { spin(busy) })
    });
}

#[test]
fn cpu_bound_calls_of_par_for_each_overlap_in_time() {
    assert_calls_overlap("par_for_each", |jobs, busy| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let run = stream::iter(0..jobs).par_for_each(2, move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(spin(busy));
            }
        });
        tokio::spawn(run);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
    });
}

/// The control: `buffer_unordered` runs its calls in the consumer's task,
/// one at a time, and the count says so.
#[test]
fn calls_that_take_turns_do_not_count_as_overlapping() {
    let (jobs, busy) = SHAPES[0];
    let spans = run_pipeline("buffer_unordered", jobs, busy, |jobs, busy| {
        stream::iter(0..jobs)
            .map(move |_| async move { spin(busy) })
            .buffer_unordered(2)
    });
    assert_eq!(overlapping(&spans), 0);
}
