//! WorkerPool guarantees: drain, abort, drop, load shedding, waiting for room,
//! contexts, counters, resize, panics and real parallelism.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::Poll;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::FutureExt;
use proptest::prelude::*;
use tokio::sync::Semaphore;
use tokio_conc::pool::{PoolStats, RejectReason};
use tokio_conc::prelude::*;

mod common;

use common::{DropCount, alive_tasks, until, within};

/// Lets every ready task run a few times, without moving the clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A gate the test opens one job at a time: jobs wait on it to finish.
fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

async fn pass(gate: &Semaphore) {
    gate.acquire().await.expect("gate never closes").forget();
}

fn accounted(stats: PoolStats) -> u64 {
    stats.waiting as u64 + stats.running as u64 + stats.completed + stats.failed
}

#[tokio::test(start_paused = true)]
async fn close_then_join_drains_every_accepted_job_and_ends_every_task() {
    let baseline = alive_tasks();
    let pool = WorkerPool::new(Workers::new(2).buffer(10));
    let mut handles = Vec::new();
    for i in 0..10_u64 {
        let job = async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            i
        };
        handles.push(pool.try_submit(job).expect("room for ten"));
    }
    pool.close();
    let late = within("submit to a closed pool", pool.submit(async { 99 }))
        .await
        .unwrap_err();
    assert_eq!(late.reason(), &RejectReason::Closed);

    within("join", pool.join()).await;
    for (i, handle) in handles.into_iter().enumerate() {
        let output = within("a drained job's handle", handle).await;
        assert_eq!(output.unwrap(), i as u64, "every accepted job ran");
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.rejected),
        (10, 10, 1)
    );
    assert_eq!(stats.workers, 0);
    until("the workers' tasks are gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn abort_drops_running_and_queued_jobs_and_their_handles_say_so() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::new(Workers::new(2).buffer(4));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let guard = DropCount(dropped.clone());
        let job = async move {
            let _guard = guard;
            std::future::pending::<()>().await
        };
        handles.push(within("submit", pool.submit(job)).await.unwrap());
    }
    settle().await;
    assert_eq!(pool.stats().running, 2);
    assert_eq!(pool.stats().waiting, 4);

    pool.abort();
    for handle in handles {
        let err = within("an aborted job's handle", handle).await.unwrap_err();
        assert!(err.is_aborted(), "{err:?}");
    }
    within("join after abort", pool.join()).await;
    assert_eq!(
        dropped.load(SeqCst),
        6,
        "every job was dropped, none leaked"
    );
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.running, stats.waiting), (6, 0, 0));
    assert!(pool.try_submit(async {}).unwrap_err().reason() == &RejectReason::Closed);
    until("the workers' tasks are gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_clone_aborts_the_pool() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::new(Workers::new(3).buffer(3));
    let clone = pool.clone();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let guard = DropCount(dropped.clone());
        let job = async move {
            let _guard = guard;
            std::future::pending::<()>().await
        };
        handles.push(within("submit", pool.submit(job)).await.unwrap());
    }
    settle().await;

    drop(pool);
    settle().await;
    assert_eq!(dropped.load(SeqCst), 0, "a clone still owns the pool");
    assert_eq!(clone.stats().running, 3);

    drop(clone);
    for handle in handles {
        let err = within("a dropped pool's job handle", handle).await;
        assert!(err.unwrap_err().is_aborted());
    }
    until("the workers' tasks are gone", || alive_tasks() == baseline).await;
    assert_eq!(dropped.load(SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_closed_pool_still_drains_it() {
    let baseline = alive_tasks();
    let pool = WorkerPool::new(1);
    let slow = pool
        .submit(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            "finished"
        })
        .await
        .unwrap();
    pool.close();
    drop(pool);
    let slow = within("a dropped closed pool's job", slow).await;
    assert_eq!(slow.unwrap(), "finished");
    until("the worker's task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn try_submit_sheds_load_when_full_and_counts_it() {
    let gate = gate();
    let pool = WorkerPool::new(Workers::new(1).buffer(2));
    let mut handles = Vec::new();
    let g = gate.clone();
    handles.push(pool.try_submit(async move { pass(&g).await }).unwrap());
    settle().await; // the worker takes it; the queue is empty again
    assert_eq!(pool.stats().running, 1);
    for _ in 0..2 {
        let g = gate.clone();
        handles.push(pool.try_submit(async move { pass(&g).await }).unwrap());
    }

    let rejected = pool.try_submit(async { 42 }).unwrap_err();
    assert!(rejected.is_full());
    assert_eq!(
        rejected.into_job().await,
        42,
        "the refused job comes back whole"
    );
    assert!(pool.try_submit(async {}).unwrap_err().is_full());
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.rejected, stats.waiting), (3, 2, 2));

    gate.add_permits(1);
    until("a seat frees", || pool.stats().waiting == 1).await;
    assert!(
        pool.try_submit(async {}).is_ok(),
        "room again after a job started"
    );
    gate.add_permits(3);
    for handle in handles {
        within("a job's handle", handle).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn submit_waits_for_room_and_only_then_queues() {
    let gate = gate();
    let pool = WorkerPool::new(Workers::new(1).buffer(1));
    let g = gate.clone();
    let first = pool.submit(async move { pass(&g).await }).await.unwrap();
    settle().await;
    let g = gate.clone();
    let second = pool.submit(async move { pass(&g).await }).await.unwrap();
    assert_eq!(pool.stats().waiting, 1, "the queue is full");

    let submitter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async { "third" }).await.unwrap().await })
    };
    settle().await;
    assert!(!submitter.is_finished());
    assert_eq!(
        pool.stats().submitted,
        2,
        "a waiting submit has queued nothing"
    );

    gate.add_permits(1); // first ends, second starts, a seat frees
    until("the waiting submit is accepted", || {
        pool.stats().submitted == 3
    })
    .await;
    gate.add_permits(1);
    let third = within("the waiting submitter", submitter).await;
    assert_eq!(third.unwrap().unwrap(), "third");
    within("the first job", first).await.unwrap();
    within("the second job", second).await.unwrap();
    assert_eq!(pool.stats().rejected, 0);
}

/// A submitter waiting for room waits for the next queued job to start, not
/// for a chunk of them: places freed by jobs that then wait (here 1 s
/// sleeps) go back before the job waits. Given back a quarter of the buffer
/// at a time, the submitter below waited 2 s, a place having been free since
/// 1 s.
#[tokio::test(start_paused = true)]
async fn a_waiting_submit_is_accepted_when_the_next_queued_job_starts() {
    let pool = WorkerPool::new(Workers::new(2).buffer(16));
    let started = Arc::new(AtomicUsize::new(0));
    let sleeper = |started: &Arc<AtomicUsize>| {
        let started = started.clone();
        async move {
            started.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    for _ in 0..2 {
        let _running = pool.submit(sleeper(&started)).await.unwrap();
    }
    settle().await;
    assert_eq!(started.load(SeqCst), 2, "both workers busy");
    for _ in 0..16 {
        let _queued = pool.submit(sleeper(&started)).await.unwrap();
    }
    assert_eq!(pool.stats().waiting, 16, "the queue is full");
    let t0 = tokio::time::Instant::now();
    let waiting = {
        let (pool, started) = (pool.clone(), started.clone());
        tokio::spawn(async move {
            let _accepted = pool.submit(async {}).await.unwrap();
            (tokio::time::Instant::now(), started.load(SeqCst))
        })
    };
    let (accepted, started_then) = within("the waiting submit", waiting).await.unwrap();
    assert_eq!(accepted - t0, Duration::from_secs(1));
    assert!(started_then <= 4, "{started_then} jobs had started");
    pool.abort();
}

/// The same for jobs that never return `Pending` (CPU-bound, or blocking
/// code): a worker whose jobs run long gives its place back as it takes the
/// next job. Each job here holds its thread 100 ms; given back four places at
/// a time, the waiting submit got in only once the fifth or sixth job had
/// started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_submit_is_not_held_up_by_a_chunk_of_long_blocking_jobs() {
    let pool = WorkerPool::new(Workers::new(2).buffer(16));
    let started = Arc::new(AtomicUsize::new(0));
    // The first two jobs also wait (blocking their threads) for the test.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(gate));
    let blocker = |started: &Arc<AtomicUsize>, gated: bool| {
        let (started, gate) = (started.clone(), gate.clone());
        async move {
            started.fetch_add(1, SeqCst);
            if gated {
                gate.lock().unwrap().recv().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for _ in 0..2 {
        let _running = pool.submit(blocker(&started, true)).await.unwrap();
    }
    // Both runtime threads are blocked from here on, so nothing drives the
    // runtime's timers: wait on this (the test's own) thread.
    for tries in 0.. {
        if started.load(SeqCst) == 2 {
            break;
        }
        assert!(tries < 10_000, "the first two jobs never started: hung");
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..16 {
        let _queued = within("a submit with room", pool.submit(blocker(&started, false)))
            .await
            .unwrap();
    }
    let mut waiting = std::pin::pin!(pool.submit(async {}));
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "the queue is full"
    );
    for _ in 0..2 {
        open.send(()).unwrap();
    }
    let _accepted = within("the waiting submit", waiting).await.unwrap();
    let started_then = started.load(SeqCst);
    assert!(started_then <= 4, "{started_then} jobs had started");
    pool.abort();
}

#[tokio::test(start_paused = true)]
async fn submit_gives_up_when_the_callers_context_is_cancelled() {
    let pool = WorkerPool::new(Workers::new(1).buffer(1));
    let _busy = pool.submit(std::future::pending::<()>()).await.unwrap();
    settle().await;
    let _queued = pool.submit(std::future::pending::<()>()).await.unwrap();

    let request = TaskContext::background();
    let waiting = {
        let pool = pool.clone();
        let request = request.clone();
        tokio::spawn(
            request
                .clone()
                .scope(async move { pool.submit(async { 5 }).await }),
        )
    };
    settle().await;
    assert!(!waiting.is_finished(), "still waiting for room");
    request.cancel_with(std::io::Error::other("client went away"));

    let rejected = within("the cancelled submitter", waiting)
        .await
        .unwrap()
        .unwrap_err();
    match rejected.reason() {
        RejectReason::Cancelled(reason) => {
            assert_eq!(reason.to_string(), "context cancelled: client went away")
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert_eq!(rejected.into_job().await, 5);
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.rejected), (2, 1));
    assert!(!pool.is_closed(), "the caller's context is not the pool's");
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_pools_context_stops_waiting_submits_and_jobs() {
    let baseline_ctx = TaskContext::background();
    let baseline = alive_tasks();
    let pool = WorkerPool::new(Workers::new(1).buffer(1).context(&baseline_ctx));
    let running = pool.submit(std::future::pending::<()>()).await.unwrap();
    settle().await;
    let queued = pool.submit(async {}).await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async {}).await.map(drop) })
    };
    settle().await;

    baseline_ctx.cancel_with(std::io::Error::other("shutting down"));
    let reason = baseline_ctx.err().unwrap();
    let rejected = within("the waiting submitter", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(rejected.reason(), &RejectReason::Cancelled(reason.clone()));
    for handle in [running, queued] {
        let err = within("a stopped job's handle", handle).await.unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(err.context_error(), Some(&reason));
    }
    assert!(pool.is_closed());
    within("join after cancel", pool.join()).await;
    until("the worker's task is gone", || alive_tasks() == baseline).await;
}

#[tokio::test(start_paused = true)]
async fn closing_stops_waiting_submits() {
    let pool = WorkerPool::new(Workers::new(1).buffer(1));
    let _busy = pool.submit(std::future::pending::<()>()).await.unwrap();
    settle().await;
    let _queued = pool.submit(async {}).await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async {}).await.map(drop) })
    };
    settle().await;
    pool.close();
    let rejected = within("the waiting submitter", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(rejected.reason(), &RejectReason::Closed);
    pool.abort();
}

#[tokio::test(start_paused = true)]
async fn a_pool_born_under_a_cancelled_context_refuses_work_without_hanging() {
    let ctx = TaskContext::background();
    ctx.cancel();
    let pool = WorkerPool::new(Workers::new(2).context(&ctx));
    let rejected = within("submit", pool.submit(async {})).await.unwrap_err();
    assert_eq!(
        rejected.reason(),
        &RejectReason::Cancelled(ContextError::Cancelled)
    );
    assert!(pool.try_submit(async {}).is_err());
    within("join", pool.join()).await;
}

#[tokio::test(start_paused = true)]
async fn counters_account_for_every_job() {
    let pool = WorkerPool::new(Workers::new(3).buffer(20));
    let mut handles = Vec::new();
    for i in 0..12_u32 {
        let job = async move {
            tokio::time::sleep(Duration::from_millis(u64::from(i))).await;
            match i % 4 {
                0 => panic!("job {i} panicked"),
                1 => Err(i),
                _ => Ok(i),
            }
        };
        handles.push(pool.submit(job).await.unwrap());
    }
    let stuck = pool
        .submit(std::future::pending::<Result<u32, u32>>())
        .await
        .unwrap();
    let mut outputs = (0, 0, 0);
    for handle in handles {
        match within("a job's handle", handle).await {
            Ok(Ok(_)) => outputs.0 += 1,
            Ok(Err(_)) => outputs.1 += 1,
            Err(err) => {
                assert!(err.is_panic());
                outputs.2 += 1;
            }
        }
    }
    assert_eq!(outputs, (6, 3, 3));
    let stats = pool.stats();
    assert_eq!(stats.submitted, 13);
    assert_eq!(stats.completed, 9, "a job returning Err still completed");
    assert_eq!((stats.panicked, stats.failed, stats.running), (3, 3, 1));
    assert_eq!(accounted(stats), stats.submitted);

    pool.abort();
    let stuck = within("the aborted job's handle", stuck).await;
    assert!(stuck.unwrap_err().is_aborted());
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.panicked, stats.running), (4, 3, 0));
    assert_eq!(accounted(stats), stats.submitted);
}

#[tokio::test(start_paused = true)]
async fn a_panic_reaches_the_handle_with_its_payload_and_the_worker_survives() {
    let pool = WorkerPool::new(1);
    let item = 7;
    let handle = pool
        .submit(async move { panic!("worker exploded on item {item}") })
        .await
        .unwrap();
    let err = within("the panicking job", handle).await.unwrap_err();
    assert_eq!(
        err.panic_message().as_deref(),
        Some("worker exploded on item 7")
    );
    assert_eq!(err.to_string(), "job panicked: worker exploded on item 7");
    let payload = err.into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().unwrap(),
        "worker exploded on item 7"
    );

    let next = within("the next job", pool.submit(async { 1 }).await.unwrap()).await;
    assert_eq!(next.unwrap(), 1);
    assert_eq!(pool.stats().workers, 1);
}

#[tokio::test(start_paused = true)]
async fn resize_grows_and_shrinks_the_number_of_running_jobs() {
    let gate = gate();
    let pool = WorkerPool::new(Workers::new(1).buffer(16));
    let mut handles = Vec::new();
    for _ in 0..10 {
        let g = gate.clone();
        handles.push(pool.submit(async move { pass(&g).await }).await.unwrap());
    }
    settle().await;
    assert_eq!(pool.stats().running, 1);

    pool.resize(4);
    settle().await;
    assert_eq!(pool.stats().workers, 4);
    assert_eq!(
        pool.stats().running,
        4,
        "growing starts workers on queued jobs"
    );

    pool.resize(2);
    settle().await;
    assert_eq!(
        pool.stats().running,
        4,
        "busy workers finish their job first"
    );
    gate.add_permits(2);
    until("two workers left", || pool.stats().workers == 2).await;
    settle().await;
    assert_eq!(pool.stats().running, 2);
    gate.add_permits(1);
    settle().await;
    assert_eq!(pool.stats().running, 2, "only two workers take jobs now");
    assert_eq!(pool.stats().waiting, 5);

    gate.add_permits(10);
    for handle in handles {
        within("a job's handle", handle).await.unwrap();
    }
    assert_eq!(pool.stats().completed, 10);
}

#[tokio::test(start_paused = true)]
async fn shrinking_lets_idle_workers_leave_at_once() {
    let baseline = alive_tasks();
    let pool = WorkerPool::new(5);
    settle().await;
    pool.resize(2);
    until("three idle workers left", || pool.stats().workers == 2).await;
    // Two workers and the watcher of the pool's context remain.
    until("their tasks are gone", || alive_tasks() == baseline + 3).await;
    let job = pool.submit(async { 3 }).await.unwrap();
    assert_eq!(within("a job after shrinking", job).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn jobs_run_with_the_pools_context_current() {
    #[derive(Debug, PartialEq)]
    struct Tenant(&'static str);
    let ctx = TaskContext::background().with_value(Tenant("acme"));
    let pool = WorkerPool::new(Workers::new(2).context(&ctx).name("billing"));
    let seen = pool
        .submit(async {
            let ctx = TaskContext::current().expect("a current context");
            (ctx.value::<Tenant>().map(|t| t.0), ctx.is_cancelled())
        })
        .await
        .unwrap();
    let seen = within("the job reading its context", seen).await.unwrap();
    assert_eq!(seen, (Some("acme"), false));

    // The job's context is the pool's: aborting the pool cancels it.
    let job_ctx = pool
        .submit(async { TaskContext::current().unwrap() })
        .await
        .unwrap();
    let job_ctx = within("the job returning its context", job_ctx)
        .await
        .unwrap();
    pool.abort();
    assert!(job_ctx.is_cancelled());
    assert!(!ctx.is_cancelled(), "never the parent");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_handle_does_not_cancel_its_job() {
    let ran = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::new(1);
    let r = ran.clone();
    drop(
        pool.submit(async move { r.fetch_add(1, SeqCst) })
            .await
            .unwrap(),
    );
    within("join", pool.join()).await;
    assert_eq!(ran.load(SeqCst), 1);
    assert_eq!(pool.stats().completed, 1);
}

/// Holds its thread (never yields) until job `i ^ 1`, its partner, has
/// started too; gives up after a while so a broken pool fails instead of
/// hanging. Returns whether the partner showed up, and where this job ran.
fn meet_partner(started: &[AtomicBool], i: usize) -> (bool, std::thread::ThreadId) {
    started[i].store(true, SeqCst);
    let since = std::time::Instant::now();
    let met = loop {
        if started[i ^ 1].load(SeqCst) {
            break true;
        }
        if since.elapsed() > Duration::from_secs(2) {
            break false;
        }
        std::hint::spin_loop();
    };
    (met, std::thread::current().id())
}

/// CPU-bound jobs really run two at once, every time: each job holds its
/// thread until its partner has started, which only a second thread can do.
/// A pool whose workers share a queue through an async lock fails this (each
/// worker wakes the next into its own thread's LIFO slot, where no other
/// thread can steal it, so the partner waits behind the spinning job): in a
/// trial, 14-25 of 200 such jobs never met their partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_jobs_run_on_two_threads_at_once() {
    const JOBS: usize = 200;
    let started: Arc<Vec<AtomicBool>> =
        Arc::new((0..JOBS).map(|_| AtomicBool::new(false)).collect());
    let pool = WorkerPool::new(Workers::new(2).buffer(4));
    // Submitting from a runtime task, as a service does: its wake-ups land in
    // the workers' threads too.
    let submitter = {
        let (pool, started) = (pool.clone(), started.clone());
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..JOBS {
                let started = started.clone();
                handles.push(
                    pool.submit(async move { meet_partner(&started, i) })
                        .await
                        .unwrap(),
                );
            }
            handles
        })
    };
    let mut threads = HashSet::new();
    let mut alone = 0;
    for handle in within("the submitter", submitter).await.unwrap() {
        let (met, thread) = within("a CPU-bound job", handle).await.unwrap();
        alone += usize::from(!met);
        threads.insert(thread);
    }
    assert_eq!(
        alone, 0,
        "{alone} of {JOBS} jobs never ran beside their partner"
    );
    assert_eq!(threads.len(), 2);
}

/// Busy-spins for `spin` of wall time, then says when it ran and where.
fn spin_for(spin: Duration) -> (Instant, Instant, ThreadId) {
    let start = Instant::now();
    while start.elapsed() < spin {
        std::hint::spin_loop();
    }
    (start, Instant::now(), std::thread::current().id())
}

/// Of the time at least one of `runs` was running, the share when two or more were.
fn overlap_share(runs: &[(Instant, Instant)]) -> f64 {
    let mut edges: Vec<(Instant, i32)> = runs
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort();
    let (mut busy, mut both, mut running) = (Duration::ZERO, Duration::ZERO, 0);
    for pair in edges.windows(2) {
        running += pair[0].1;
        let span = pair[1].0 - pair[0].0;
        if running >= 1 {
            busy += span;
        }
        if running >= 2 {
            both += span;
        }
    }
    both.as_secs_f64() / busy.as_secs_f64()
}

/// CPU-bound jobs keep both threads busy, not only now and then: of the
/// time any of 100 jobs of ~1.5 ms was running, most of it had two running
/// at once. The queue is short, so the submitter waits for room and every
/// job's start frees a place: a worker that woke the waiting submitter into
/// its own thread's LIFO slot and then ran its job would stall it there while
/// the other worker drains the queue and idles (without stepping aside, two
/// jobs ran at once 11-51% of the time). Wall-clock overlap, not speed, so
/// a loaded machine slows it but does not fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_jobs_overlap_most_of_the_time() {
    const JOBS: usize = 100;
    let pool = WorkerPool::new(Workers::new(2).buffer(4));
    let submitter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(JOBS);
            for _ in 0..JOBS {
                let job = async { spin_for(Duration::from_micros(1500)) };
                handles.push(pool.submit(job).await.unwrap());
            }
            handles
        })
    };
    let mut runs = Vec::with_capacity(JOBS);
    let mut threads = HashSet::new();
    for handle in within("the submitter", submitter).await.unwrap() {
        let (start, end, thread) = within("a CPU-bound job", handle).await.unwrap();
        runs.push((start, end));
        threads.insert(thread);
    }
    let share = overlap_share(&runs);
    assert!(
        share > 0.7,
        "two jobs ran at once only {:.0}% of the busy time",
        share * 100.0
    );
    assert_eq!(threads.len(), 2);
}

/// A submitter that wakes an idle worker and then holds its thread (blocking
/// code in a task) strands that worker in its thread's LIFO slot, where no
/// other thread can steal it. Jobs submitted meanwhile from another thread
/// must still run: once they pile up, a second idle worker is woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_that_holds_its_thread_does_not_hold_up_other_jobs() {
    let pool = WorkerPool::new(Workers::new(2).buffer(64));
    settle().await; // both workers wait for work
    let hog_done = Arc::new(AtomicBool::new(false));
    let hog = {
        let (pool, hog_done) = (pool.clone(), hog_done.clone());
        tokio::spawn(async move {
            let _job = pool.submit(async {}).await.unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            hog_done.store(true, SeqCst);
        })
    };
    while pool.stats().submitted == 0 {
        tokio::task::yield_now().await;
    }
    let others = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..40 {
                handles.push(pool.submit(async move { i }).await.unwrap());
            }
            for handle in handles {
                handle.await.unwrap();
            }
        })
    };
    within("the other submitter", others).await.unwrap();
    assert!(
        !hog_done.load(SeqCst),
        "the other jobs waited until the blocking submitter let its thread go"
    );
    within("the blocking submitter", hog).await.unwrap();
}

#[test]
#[should_panic(expected = "`workers` must be at least 1, got 0")]
fn zero_workers_panics_naming_the_argument() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { WorkerPool::new(0) });
}

#[test]
#[should_panic(expected = "`buffer` must be at least 1, got 0")]
fn zero_buffer_panics_naming_the_argument() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { WorkerPool::new(Workers::new(2).buffer(0)) });
}

#[tokio::test]
#[should_panic(expected = "`workers` must be at least 1, got 0")]
async fn resizing_to_zero_panics_naming_the_argument() {
    WorkerPool::new(2).resize(0);
}

#[test]
#[should_panic(expected = "WorkerPool::new must be called within a Tokio runtime")]
fn outside_a_runtime_panics_naming_the_constructor() {
    let _ = WorkerPool::new(2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any mix of workers, buffer, job count and delays: every job's output
    /// reaches its handle, at most `workers` run at once, counters add up, and
    /// no task is left after join.
    #[test]
    fn every_job_runs_once_within_the_worker_bound(
        workers in 1_usize..8,
        buffer in 1_usize..8,
        delays in proptest::collection::vec(0_u64..5, 0..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let baseline = alive_tasks();
            let pool = WorkerPool::new(Workers::new(workers).buffer(buffer));
            let now = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            for (i, delay) in delays.iter().copied().enumerate() {
                let (now, peak) = (now.clone(), peak.clone());
                let job = async move {
                    peak.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    now.fetch_sub(1, SeqCst);
                    i
                };
                handles.push(within("submit", pool.submit(job)).await.unwrap());
            }
            within("join", pool.join()).await;
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.now_or_never().expect("done after join").unwrap(), i);
            }
            assert!(peak.load(SeqCst) <= workers);
            let stats = pool.stats();
            assert_eq!(stats.completed, delays.len() as u64);
            assert_eq!(accounted(stats), stats.submitted);
            until("the workers' tasks are gone", || alive_tasks() == baseline).await;
        });
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_job_wakes_an_idle_worker_never_a_busy_one() {
    let (long, short) = (gate(), gate());
    let pool = WorkerPool::new(Workers::new(2).buffer(4));
    settle().await; // both workers wait for work
    let (l, s) = (long.clone(), short.clone());
    let first = pool.submit(async move { pass(&l).await }).await.unwrap();
    settle().await;
    let second = pool.submit(async move { pass(&s).await }).await.unwrap();
    settle().await;
    assert_eq!(pool.stats().running, 2);
    short.add_permits(1);
    within("the short job", second).await.unwrap();
    tokio::task::yield_now().await;

    // One worker is busy until `long` opens; the other is idle and must take this.
    let third = pool
        .submit(async { "ran beside the busy worker" })
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(1), third).await;
    assert_eq!(
        done.expect("the idle worker was not woken").unwrap(),
        "ran beside the busy worker"
    );
    long.add_permits(1);
    within("the long job", first).await.unwrap();
}

#[tokio::test]
async fn pool_handles_and_submissions_can_move_between_tasks() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let pool = WorkerPool::new(1);
    assert_send_sync(&pool);
    let submission = pool.submit(async { 1 });
    assert_send_sync(&submission);
    let handle = submission.await.unwrap();
    assert_send_sync(&handle);
    let panicking = WorkerPool::new(1)
        .submit(async { panic!("x") })
        .await
        .unwrap();
    let err = within("the panicking job", panicking).await.unwrap_err();
    assert_send_sync(&err);
    let moved = within("a handle awaited in another task", tokio::spawn(handle)).await;
    assert_eq!(moved.unwrap().unwrap(), 1);
}

/// A handle of a job the pool's context stopped keeps saying so, even when
/// the caller aborts the already stopped pool (as a shutdown path does)
/// before reading it.
#[tokio::test(start_paused = true)]
async fn aborting_a_pool_its_context_already_stopped_keeps_the_reason() {
    let ctx = TaskContext::background();
    let pool = WorkerPool::new(Workers::new(1).buffer(1).context(&ctx));
    let running = pool.submit(std::future::pending::<()>()).await.unwrap();
    settle().await;
    let queued = pool.submit(async {}).await.unwrap();
    ctx.cancel_with(std::io::Error::other("shutting down"));
    let reason = ctx.err().unwrap();
    within("join after cancel", pool.join()).await;

    pool.abort();
    for handle in [running, queued] {
        let err = within("a stopped job's handle", handle).await.unwrap_err();
        assert_eq!(err.context_error(), Some(&reason), "{err:?}");
    }
    assert_eq!(
        pool.try_submit(async {}).unwrap_err().reason(),
        &RejectReason::Cancelled(reason)
    );
}

/// A job future (hand-written, not an `async` block) that panics when dropped.
struct PanicsWhenDropped;

impl Future for PanicsWhenDropped {
    type Output = u8;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<u8> {
        Poll::Ready(1)
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropping the job broke");
    }
}

/// A panic while dropping a finished job is the job's panic like any other:
/// its handle reports it and the worker goes on; the worker does not die
/// leaving the queue to nobody.
#[tokio::test(start_paused = true)]
async fn a_job_panicking_in_drop_is_reported_and_the_worker_survives() {
    let pool = WorkerPool::new(Workers::new(1).buffer(2));
    let broken = pool.submit(PanicsWhenDropped).await.unwrap();
    let next = pool.submit(async { 2 }).await.unwrap();
    let err = within("the job panicking in drop", broken)
        .await
        .unwrap_err();
    assert_eq!(
        err.panic_message().as_deref(),
        Some("dropping the job broke")
    );
    let next = tokio::time::timeout(Duration::from_secs(1), next).await;
    assert_eq!(next.expect("the next job ran").unwrap(), 2);
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.panicked, stats.completed), (1, 1, 1));
    assert_eq!(accounted(stats), stats.submitted);
}

/// Dropping a `submit` that waits for room queues nothing and keeps no place
/// in the queue: the next free place goes to the next submitter.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_submit_queues_nothing_and_holds_no_place() {
    let gate = gate();
    let pool = WorkerPool::new(Workers::new(1).buffer(1));
    let g = gate.clone();
    let running = pool.submit(async move { pass(&g).await }).await.unwrap();
    settle().await;
    let queued = pool.submit(async {}).await.unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let given_up = tokio::time::timeout(
        Duration::from_millis(5),
        pool.submit(async move { r.store(true, SeqCst) }),
    )
    .await;
    assert!(given_up.is_err(), "it was still waiting for room");

    gate.add_permits(1);
    within("the running job", running).await.unwrap();
    within("the queued job", queued).await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.rejected), (2, 0));
    assert!(
        pool.try_submit(async {}).is_ok(),
        "the dropped submit kept no place"
    );
    within("join", pool.join()).await;
    assert!(!ran.load(SeqCst), "the dropped job never ran");
}

/// An output that panics when dropped.
struct OutputPanicsWhenDropped;

impl Drop for OutputPanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropping the output broke");
    }
}

/// With its handle gone, a job's output is dropped on the worker: a panic
/// in its destructor must not kill the worker and leave the queue to nobody.
#[tokio::test(start_paused = true)]
async fn an_unwanted_output_panicking_in_drop_does_not_kill_the_worker() {
    let pool = WorkerPool::new(Workers::new(1).buffer(2));
    let gate = gate();
    let g = gate.clone();
    let unwanted = pool
        .submit(async move {
            pass(&g).await;
            OutputPanicsWhenDropped
        })
        .await
        .unwrap();
    drop(unwanted);
    let next = pool.submit(async { 2 }).await.unwrap();
    gate.add_permits(1);
    let next = tokio::time::timeout(Duration::from_secs(1), next).await;
    assert_eq!(next.expect("the next job ran").unwrap(), 2);
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.completed), (1, 2));
}

/// A huge buffer (a queue meant to be "unbounded") reserves nothing up
/// front: places are only permits until jobs fill them.
#[tokio::test(start_paused = true)]
async fn a_huge_buffer_allocates_nothing_up_front() {
    let pool = WorkerPool::new(Workers::new(1).buffer(1 << 40));
    let job = pool.submit(async { 1 }).await.unwrap();
    assert_eq!(within("the job", job).await.unwrap(), 1);
}

/// The defect: `pool.submit(fut).await?` into a `Box<dyn Error + Send + Sync>`
/// did not compile, because `Rejected<F>` was not `Sync` for a boxed
/// `dyn Future + Send` job. This is a compile check first, then a run.
#[tokio::test]
async fn a_rejected_boxed_job_converts_into_a_boxed_error_with_question_mark() {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    type Job = std::pin::Pin<Box<dyn Future<Output = u32> + Send>>;
    fn assert_error_send_sync<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error_send_sync::<tokio_conc::pool::Rejected<Job>>();

    async fn run(pool: &WorkerPool, job: Job) -> Result<u32, BoxError> {
        let handle = pool.submit(job).await?;
        Ok(handle.await?)
    }
    let pool = WorkerPool::new(1);
    assert_eq!(run(&pool, Box::pin(async { 3 })).await.unwrap(), 3);
    pool.close();
    let err = run(&pool, Box::pin(async { 4 })).await.unwrap_err();
    let rejected = err
        .downcast_ref::<tokio_conc::pool::Rejected<Job>>()
        .expect("the rejection itself");
    assert_eq!(rejected.reason(), &RejectReason::Closed);
}
