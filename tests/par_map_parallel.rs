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

const JOBS: u64 = 100;

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

/// Runs `pipeline` in a spawned task (as a service does: the consumer then
/// shares a runtime thread with the workers) and checks its calls overlapped.
fn assert_calls_overlap<S>(operator: &str, pipeline: fn() -> S)
where
    S: Stream<Item = Span> + Send + 'static,
{
    let rt = two_threads();
    let spans = rt.block_on(async {
        let consumer = tokio::spawn(async move { pipeline().collect::<Vec<_>>().await });
        tokio::time::timeout(Duration::from_secs(60), consumer)
            .await
            .unwrap_or_else(|_| panic!("{operator} hung"))
            .expect("consumer")
    });
    assert_eq!(spans.len(), JOBS as usize);
    let threads: HashSet<_> = spans.iter().map(|(thread, _, _)| *thread).collect();
    let overlapped = overlapping(&spans);
    eprintln!(
        "{operator}: {overlapped} of {JOBS} calls overlapped, {} threads",
        threads.len()
    );
    // Running in parallel, nearly every call overlaps one on the other
    // thread; taking turns on one thread, none does.
    assert!(
        overlapped >= JOBS as usize / 4,
        "{operator}: only {overlapped} of {JOBS} CPU-bound calls overlapped a call on \
         another thread ({} threads used): the workers took turns instead of running in parallel",
        threads.len()
    );
}

#[test]
fn cpu_bound_calls_of_par_map_unordered_overlap_in_time() {
    assert_calls_overlap("par_map_unordered", || {
        stream::iter(0..JOBS).par_map_unordered(2, |_| async { spin(Duration::from_micros(1500)) })
    });
}

#[test]
fn cpu_bound_calls_of_par_map_overlap_in_time() {
    assert_calls_overlap("par_map", || {
        stream::iter(0..JOBS).par_map(2, |_| async { spin(Duration::from_micros(1500)) })
    });
}

#[test]
fn cpu_bound_calls_of_par_for_each_overlap_in_time() {
    assert_calls_overlap("par_for_each", || {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let run = stream::iter(0..JOBS).par_for_each(2, move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(spin(Duration::from_micros(1500)));
            }
        });
        tokio::spawn(run);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
    });
}
