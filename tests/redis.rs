//! The Redis Streams source and sink against a real `redis-server` (one per
//! test, on a free loopback port, persistence off). Without the binary each
//! test prints that it was skipped and passes; `.ci/run` installs it.

#![cfg(feature = "redis")]
#![allow(dead_code)]

#[allow(dead_code)]
#[path = "support/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FusedStream;
use tokio::time::{sleep, timeout};
use tokio_conc::prelude::*;
use tokio_conc::redis::driver::aio::MultiplexedConnection;
use tokio_conc::redis::driver::{self, Value};
use tokio_conc::redis::{
    Client, Deliveries, Delivery, EntryId, Error, Fields, RedisSink, RedisSource, open,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Long enough that only a hang reaches it.
const LONG: Duration = Duration::from_secs(20);

macro_rules! server_or_skip {
    ($name:expr) => {
        match RedisServer::start($name) {
            Some(server) => server,
            None => return,
        }
    };
}

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    timeout(LONG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

async fn conn(client: &Client) -> MultiplexedConnection {
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Adds jobs `0..n` (field `job`) to `key`.
async fn add_jobs(client: &Client, key: &str, n: u32) {
    let jobs = futures::stream::iter(0..n).map(|i| [("job", i)]);
    let written = RedisSink::new(client, key).write_all(jobs).await.unwrap();
    assert_eq!(written, u64::from(n));
}

/// Every entry id of `key`, in order, with its job number.
async fn all_jobs(client: &Client, key: &str) -> Vec<(EntryId, u32)> {
    entries(client, key)
        .await
        .into_iter()
        .map(|(id, f)| (id.parse().unwrap(), f["job"].parse().unwrap()))
        .collect()
}

/// Pending entries of the group: total, and per consumer.
async fn pending(client: &Client, key: &str, group: &str) -> (u64, HashMap<String, u64>) {
    let mut c = conn(client).await;
    let reply: (u64, Value, Value, Value) = driver::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut per = HashMap::new();
    if let Value::Array(consumers) = reply.3 {
        for pair in consumers {
            let (name, count): (String, String) = driver::from_redis_value(pair).unwrap();
            per.insert(name, count.parse().unwrap());
        }
    }
    (reply.0, per)
}

/// The ids pending in the group.
async fn pending_ids(client: &Client, key: &str, group: &str) -> BTreeSet<EntryId> {
    let mut c = conn(client).await;
    let reply: Vec<(String, String, u64, u64)> = driver::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(&mut c)
        .await
        .unwrap();
    reply
        .into_iter()
        .map(|(id, ..)| id.parse().unwrap())
        .collect()
}

/// The ids of `key` that group `g` has not read yet (after its last
/// delivered id).
async fn unread_ids(client: &Client, key: &str) -> BTreeSet<EntryId> {
    let mut c = conn(client).await;
    let groups: Vec<HashMap<String, Value>> = driver::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    let last: String = driver::from_redis_value(groups[0]["last-delivered-id"].clone()).unwrap();
    let last: EntryId = last.parse().unwrap();
    let all = all_jobs(client, key).await;
    all.iter().map(|e| e.0).filter(|id| *id > last).collect()
}

/// Waits until every id in `acked` is acknowledged on the server (no longer
/// pending in group `g` of `jobs`), then checks that each of the `total`
/// entries is in exactly one place: acknowledged, still pending (read and
/// not acknowledged, or given back), or unread. Returns the pending ids.
async fn every_entry_accounted_for(
    client: &Client,
    acked: &BTreeSet<EntryId>,
    total: usize,
) -> BTreeSet<EntryId> {
    eventually("every acknowledgement flushed", || async {
        pending_ids(client, "jobs", "g").await.is_disjoint(acked)
    })
    .await;
    let pending = pending_ids(client, "jobs", "g").await;
    let unread = unread_ids(client, "jobs").await;
    assert!(pending.is_disjoint(&unread) && acked.is_disjoint(&unread));
    assert_eq!(
        acked.len() + pending.len() + unread.len(),
        total,
        "acknowledged + pending + unread = all added"
    );
    pending
}

async fn xlen(client: &Client, key: &str) -> u64 {
    let mut c = conn(client).await;
    driver::cmd("XLEN")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Waits until group `g` of `key` has nothing pending (every acknowledgement
/// flushed).
async fn nothing_pending(client: &Client, key: &str, what: &str) {
    eventually(what, || async { pending(client, key, "g").await.0 == 0 }).await
}

/// Every entry of `key`: its id and fields.
async fn entries(client: &Client, key: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut c = conn(client).await;
    driver::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Waits until `check` holds, polling every 20 ms; panics naming `what` after
/// [`LONG`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn job(d: &Delivery<Fields>) -> u32 {
    d.fields().parse("job").unwrap()
}

/// Who handled what: (consumer, job, delivery count) for every successful
/// handling.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, u32, u64)>>>);

impl Log {
    fn record(&self, consumer: &str, job: u32, deliveries: u64) {
        self.0
            .lock()
            .unwrap()
            .push((consumer.to_owned(), job, deliveries));
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn entries(&self) -> Vec<(String, u32, u64)> {
        self.0.lock().unwrap().clone()
    }
    fn jobs(&self) -> Vec<u32> {
        self.entries().into_iter().map(|(_, j, _)| j).collect()
    }
}

/// A worker: 8 handlers that log and acknowledge each delivery, until the
/// source ends (its context stops it). Returns the source's errors.
async fn work(source: Deliveries<Fields>, name: &'static str, log: Log) -> Vec<Error> {
    source
        .par_map_unordered(8, move |d| {
            let log = log.clone();
            async move {
                let d = d?;
                log.record(name, job(&d), d.delivery_count());
                d.ack();
                Ok::<_, Error>(())
            }
        })
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

/// Runs one worker ([`work`]) on `source` until it has handled `count`
/// entries, then cancels it; returns what it handled.
async fn work_until(source: RedisSource, name: &'static str, count: usize) -> Log {
    let ctx = TaskContext::background();
    let log = Log::default();
    let source = source.context(&ctx).connect().await.unwrap();
    let worker = tokio::spawn(work(source, name, log.clone()));
    eventually(&format!("{name} handling {count}"), || async {
        log.len() >= count
    })
    .await;
    ctx.cancel();
    within(&format!("{name}'s end"), worker).await.unwrap();
    log
}

async fn share(consumers: &'static [&'static str]) {
    let server = server_or_skip!("consumers_share_a_stream");
    let client = open(&server.url()).unwrap();
    const N: u32 = 10_000;
    add_jobs(&client, "jobs", N).await;
    let ctx = TaskContext::background();
    let log = Log::default();
    let mut workers = Vec::new();
    for &name in consumers {
        let source = RedisSource::new(&client, "jobs", "g", name)
            .context(&ctx)
            .connect()
            .await
            .unwrap();
        workers.push(tokio::spawn(work(source, name, log.clone())));
    }
    eventually("sharing 10,000 entries", || async {
        log.len() >= N as usize
    })
    .await;
    ctx.cancel();
    for w in workers {
        let errors = within("a worker's end", w).await.unwrap();
        assert!(
            errors.iter().all(|e| matches!(e, Error::Stopped(_))),
            "{errors:?}"
        );
    }
    let entries = log.entries();
    let mut per_job = vec![0_u32; N as usize];
    let mut per_consumer: HashMap<String, usize> = HashMap::new();
    for (consumer, job, deliveries) in &entries {
        per_job[*job as usize] += 1;
        *per_consumer.entry(consumer.clone()).or_default() += 1;
        assert_eq!(
            *deliveries, 1,
            "nothing was reclaimed, so nothing redelivered"
        );
    }
    assert!(per_job.iter().all(|&n| n == 1), "every entry exactly once");
    for name in consumers {
        assert!(
            per_consumer.get(*name).copied().unwrap_or(0) > 0,
            "{name} got a share: {per_consumer:?}"
        );
    }
    nothing_pending(&client, "jobs", "every acknowledgement flushed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_ten_thousand_entries_each_once() {
    share(&["alice", "bob"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_ten_thousand_entries_each_once() {
    share(&["alice", "bob", "carol"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_entries_are_reclaimed_and_finished() {
    let server = server_or_skip!("a_dead_consumers_entries_are_reclaimed_and_finished");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 500).await;
    // A worker that read 100 entries and died: a raw XREADGROUP, never acknowledged.
    let mut c = conn(&client).await;
    let _: () = driver::cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs")
        .arg("g")
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: Value = driver::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("crashed")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg("jobs")
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();

    let rescuer =
        RedisSource::new(&client, "jobs", "g", "rescuer").claim_idle(Duration::from_millis(200));
    let log = work_until(rescuer, "rescuer", 500).await;

    let entries = log.entries();
    let jobs: BTreeSet<u32> = entries.iter().map(|e| e.1).collect();
    assert_eq!(jobs.len(), 500);
    assert_eq!(entries.len(), 500, "each once");
    for (_, job, deliveries) in entries {
        let expected = if job < 100 { 2 } else { 1 };
        assert_eq!(deliveries, expected, "job {job}");
    }
    nothing_pending(&client, "jobs", "everything acknowledged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumers_pending_entries_are_finished_by_another() {
    let server = server_or_skip!("a_dropped_consumers_pending_entries_are_finished_by_another");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 300).await;
    let idle = Duration::from_millis(200);

    // A handles 20, then holds 10 deliveries unacknowledged, and is dropped
    // with them (and whatever it had read ahead).
    let mut a = RedisSource::new(&client, "jobs", "g", "a")
        .prefetch(50)
        .claim_idle(idle)
        .connect()
        .await
        .unwrap();
    let mut acked_by_a = HashSet::new();
    for _ in 0..20 {
        let d = within("a's read", a.next()).await.unwrap().unwrap();
        acked_by_a.insert(job(&d));
        d.ack();
    }
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(within("a's read", a.next()).await.unwrap().unwrap());
    }
    eventually("a's acknowledgements", || async {
        pending(&client, "jobs", "g")
            .await
            .1
            .get("a")
            .copied()
            .unwrap_or(0)
            <= 40
    })
    .await;
    drop(held);
    drop(a);

    let b = RedisSource::new(&client, "jobs", "g", "b").claim_idle(idle);
    let log = work_until(b, "b", 280).await;

    let by_b: HashSet<u32> = log.jobs().into_iter().collect();
    assert_eq!(by_b.len(), log.len(), "b handled each once");
    assert!(
        by_b.is_disjoint(&acked_by_a),
        "acknowledged entries are never redelivered"
    );
    let all: HashSet<u32> = by_b.union(&acked_by_a).copied().collect();
    assert_eq!(all.len(), 300, "the final set is complete");
    nothing_pending(&client, "jobs", "everything acknowledged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_entry_reaches_the_dead_letter_stream_and_the_rest_flow() {
    let server = server_or_skip!("a_poison_entry_reaches_the_dead_letter_stream_and_the_rest_flow");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 200).await;
    let poison_tries = Arc::new(AtomicUsize::new(0));
    let ctx = TaskContext::background();
    let log = Log::default();
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .claim_idle(Duration::from_millis(150))
        .max_deliveries(3)
        .dead_letter("jobs:poison")
        .context(&ctx)
        .connect()
        .await
        .unwrap();
    let (tries, l) = (Arc::clone(&poison_tries), log.clone());
    let worker = tokio::spawn(
        source
            .par_map_unordered(8, move |d| {
                let (tries, log) = (Arc::clone(&tries), l.clone());
                async move {
                    let d = d?;
                    let (job, n) = (job(&d), d.delivery_count());
                    d.ack_after(|_| async move {
                        if job == 57 {
                            tries.fetch_add(1, Ordering::SeqCst);
                            return Err(format!("job {job} is poison"));
                        }
                        if job % 40 == 0 && n == 1 {
                            return Err(format!("job {job} failed once"));
                        }
                        log.record("w", job, n);
                        Ok(())
                    })
                    .await
                    .map_err(BoxError::from)
                }
            })
            .collect::<Vec<_>>(),
    );
    eventually("199 handled and one dead letter", || async {
        log.len() >= 199 && xlen(&client, "jobs:poison").await == 1
    })
    .await;
    ctx.cancel();
    within("the worker's end", worker).await.unwrap();

    assert_eq!(
        poison_tries.load(Ordering::SeqCst),
        3,
        "tried max_deliveries times"
    );
    let handled = log.entries();
    assert_eq!(handled.len(), 199);
    for (_, job, n) in &handled {
        assert_eq!(*n, if job % 40 == 0 { 2 } else { 1 }, "job {job}");
    }
    let dead = entries(&client, "jobs:poison").await;
    let fields = &dead[0].1;
    let poison_id = all_jobs(&client, "jobs").await[57].0.to_string();
    assert_eq!(fields["dead_letter.id"], poison_id);
    assert_eq!(fields["dead_letter.stream"], "jobs");
    assert_eq!(fields["dead_letter.deliveries"], "3");
    assert_eq!(fields["dead_letter.error"], "job 57 is poison");
    assert_eq!(fields["job"], "57", "the entry's own fields come along");
    nothing_pending(&client, "jobs", "nothing pending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_does_not_decode_goes_to_the_dead_letter_stream_at_once() {
    let server =
        server_or_skip!("an_entry_that_does_not_decode_goes_to_the_dead_letter_stream_at_once");
    let client = open(&server.url()).unwrap();
    let items = futures::stream::iter(["1", "two", "3"]).map(|v| [("job", v)]);
    RedisSink::new(&client, "jobs")
        .write_all(items)
        .await
        .unwrap();
    let mut source = RedisSource::new(&client, "jobs", "g", "w")
        .decode(|f| f.parse::<u32>("job"))
        .connect()
        .await
        .unwrap();
    for expected in [1, 3] {
        let d = within("a read", source.next()).await.unwrap().unwrap();
        assert_eq!(*d.fields(), expected);
        d.ack();
    }
    eventually("the dead letter", || async {
        xlen(&client, "jobs:dead").await == 1
    })
    .await;
    let dead = entries(&client, "jobs:dead").await;
    assert_eq!(
        dead[0].1["dead_letter.error"],
        "cannot decode: field `job` does not parse"
    );
    assert_eq!(dead[0].1["dead_letter.deliveries"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_entries_never_exceed_prefetch() {
    let server = server_or_skip!("unacknowledged_entries_never_exceed_prefetch");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 200).await;
    const PREFETCH: u64 = 16;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .prefetch(PREFETCH as usize)
        .batch(8)
        .connect()
        .await
        .unwrap();
    let (g, s, dn) = (Arc::clone(&gate), Arc::clone(&started), Arc::clone(&done));
    // Far more workers than prefetch: the pool asks for more than it may get.
    let worker = tokio::spawn(
        source
            .par_map_unordered(64, move |d| {
                let (g, s, dn) = (Arc::clone(&g), Arc::clone(&s), Arc::clone(&dn));
                async move {
                    let d = d.unwrap();
                    s.fetch_add(1, Ordering::SeqCst);
                    g.acquire().await.unwrap().forget();
                    d.ack();
                    dn.fetch_add(1, Ordering::SeqCst);
                }
            })
            .take(200)
            .collect::<Vec<_>>(),
    );

    eventually("prefetch handed out", || async {
        started.load(Ordering::SeqCst) == PREFETCH as usize
    })
    .await;
    sleep(Duration::from_millis(300)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        PREFETCH as usize,
        "no more than prefetch"
    );
    assert_eq!(pending(&client, "jobs", "g").await.1["w"], PREFETCH);

    // Let them through a few at a time, asking the server all along.
    let max_seen = Arc::new(AtomicU64::new(0));
    let stop = TaskContext::background();
    let sampler = {
        let (client, max_seen, stop) = (client.clone(), Arc::clone(&max_seen), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = pending(&client, "jobs", "g").await.0;
                max_seen.fetch_max(n, Ordering::SeqCst);
                sleep(Duration::from_millis(2)).await;
            }
        })
    };
    while done.load(Ordering::SeqCst) < 200 {
        gate.add_permits(5);
        sleep(Duration::from_millis(3)).await;
        assert!(!worker.is_finished() || done.load(Ordering::SeqCst) == 200);
    }
    within("the worker", worker).await.unwrap();
    stop.cancel();
    sampler.await.unwrap();
    let max_seen = max_seen.load(Ordering::SeqCst);
    assert!(
        max_seen <= PREFETCH,
        "the server saw {max_seen} pending > prefetch {PREFETCH}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_stream_loses_nothing() {
    let server = server_or_skip!("cancelling_mid_stream_loses_nothing");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 1000).await;
    let ctx = TaskContext::background();
    let acked: Arc<Mutex<BTreeSet<EntryId>>> = Arc::default();
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .prefetch(64)
        .context(&ctx)
        .connect()
        .await
        .unwrap();
    let a = Arc::clone(&acked);
    let (c2, out) = (ctx.clone(), Arc::new(Mutex::new(Vec::new())));
    let out2 = Arc::clone(&out);
    let worker = tokio::spawn(async move {
        source
            .par_map_unordered(8, move |d| {
                let (a, ctx) = (Arc::clone(&a), c2.clone());
                async move {
                    let d = d?;
                    sleep(Duration::from_millis(1)).await;
                    let mut acked = a.lock().unwrap();
                    acked.insert(d.id());
                    if acked.len() == 300 {
                        ctx.cancel();
                    }
                    d.ack();
                    Ok::<_, Error>(())
                }
            })
            .for_each(|r| {
                out2.lock().unwrap().push(r);
                async {}
            })
            .await
    });
    within("the cancelled worker", worker).await.unwrap();
    let stopped = out
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Err(Error::Stopped(_))));
    assert!(stopped, "a stopped source says so");

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    every_entry_accounted_for(&client, &acked, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_during_a_blocking_read_is_prompt() {
    let server = server_or_skip!("cancelling_during_a_blocking_read_is_prompt");
    let client = open(&server.url()).unwrap();
    let ctx = TaskContext::background();
    let mut source = RedisSource::new(&client, "empty", "g", "w")
        .block(Duration::from_secs(60))
        .context(&ctx)
        .connect()
        .await
        .unwrap();
    let c = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(100)).await;
        c.cancel();
    });
    let first = timeout(Duration::from_secs(2), source.next())
        .await
        .expect("cancel did not end the blocking read");
    assert!(matches!(first, Some(Err(Error::Stopped(_)))), "{first:?}");
    assert!(source.next().await.is_none());
}

/// A deadline stops a blocking read on time, like a cancel: the source waits
/// on the context itself (no timer task) and says why it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_a_blocking_read_on_time() {
    let server = server_or_skip!("a_deadline_ends_a_blocking_read_on_time");
    let client = open(&server.url()).unwrap();
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(300));
    let mut source = RedisSource::new(&client, "empty", "g", "w")
        .block(Duration::from_secs(60))
        .context(&ctx)
        .connect()
        .await
        .unwrap();
    let first = timeout(Duration::from_secs(5), source.next())
        .await
        .expect("the deadline did not end the blocking read");
    assert!(
        matches!(
            first,
            Some(Err(Error::Stopped(ContextError::DeadlineExceeded)))
        ),
        "{first:?}"
    );
    assert!(source.next().await.is_none());
}

/// Graceful shutdown of a Redis worker: `close_on` ends the source when
/// draining begins, the pool finishes every delivery it was handed, the
/// shutdown is clean, and every handled entry's acknowledgement reaches the
/// server (the ack task flushes after the source and the last delivery are
/// gone). What was read ahead stays pending for another consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_drains_the_source_and_every_ack_is_flushed() {
    let server = server_or_skip!("a_shutdown_drains_the_source_and_every_ack_is_flushed");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 1000).await;
    let shutdown = Shutdown::new();
    let handled: Arc<Mutex<BTreeSet<EntryId>>> = Arc::default();
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .prefetch(64)
        .context(shutdown.context())
        .connect()
        .await
        .unwrap();
    let h = Arc::clone(&handled);
    let worker = shutdown.spawn(
        "worker",
        source
            .close_on(&shutdown)
            .par_map_unordered(Workers::new(8).context(shutdown.context()), move |d| {
                let h = Arc::clone(&h);
                async move {
                    let d = d?;
                    sleep(Duration::from_millis(5)).await; // in flight at the trigger
                    h.lock().unwrap().insert(d.id());
                    d.ack();
                    Ok::<_, Error>(())
                }
            })
            .collect::<Vec<_>>(),
    );
    eventually("100 handled", || async {
        handled.lock().unwrap().len() >= 100
    })
    .await;
    shutdown.trigger();
    let report = within("the shutdown", shutdown.wait(Duration::from_secs(10))).await;
    assert!(report.is_clean(), "{report}");
    let results = worker.await.unwrap();
    assert!(
        results.iter().all(Result::is_ok),
        "a drain is not a stop: {results:?}"
    );
    let handled = handled.lock().unwrap().clone();
    assert_eq!(
        results.len(),
        handled.len(),
        "every delivery handed out was handled"
    );
    assert!(handled.len() < 1000, "the shutdown came mid-stream");
    let pending = every_entry_accounted_for(&client, &handled, 1000).await;
    assert!(pending.len() <= 64, "at most a prefetch window read ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_source_flushes_the_acks_of_deliveries_still_running() {
    let server = server_or_skip!("closing_the_source_flushes_the_acks_of_deliveries_still_running");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 500).await;
    let close = TaskContext::background();
    let handled = Log::default();
    let source = RedisSource::new(&client, "jobs", "g", "first")
        .claim_idle(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let (h, c) = (handled.clone(), close.clone());
    let out: Vec<()> = within(
        "the drain",
        source
            .take_until(close.clone().token().cancelled_owned())
            .par_map_unordered(8, move |d| {
                let (h, c) = (h.clone(), c.clone());
                async move {
                    let d = d.unwrap();
                    if h.len() >= 100 {
                        c.cancel(); // close the source mid-run
                    }
                    sleep(Duration::from_millis(20)).await; // still running after the close
                    h.record("first", job(&d), d.delivery_count());
                    d.ack();
                }
            })
            .collect(),
    )
    .await;
    assert_eq!(
        out.len(),
        handled.len(),
        "every delivery handed out finished"
    );
    nothing_pending(&client, "jobs", "the drained deliveries' acks").await;

    // What the first worker read ahead was given back: another consumer takes
    // it at once, long before the 60 s claim_idle.
    let second =
        RedisSource::new(&client, "jobs", "g", "second").claim_idle(Duration::from_secs(60));
    let log = work_until(second, "second", 500 - handled.len()).await;
    let mut jobs: Vec<u32> = handled.jobs();
    jobs.extend(log.jobs());
    jobs.sort_unstable();
    assert_eq!(jobs, (0..500).collect::<Vec<_>>(), "each job once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_is_an_error_not_a_hang() {
    let mut server = server_or_skip!("a_server_killed_mid_run_is_an_error_not_a_hang");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 5000).await;
    let live = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let handled = Arc::new(AtomicUsize::new(0));
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .connect()
        .await
        .unwrap();
    let h = Arc::clone(&handled);
    let run = tokio::spawn(
        source
            .par_map_unordered(8, move |d| {
                let h = Arc::clone(&h);
                async move {
                    let d = d?;
                    sleep(Duration::from_millis(1)).await;
                    h.fetch_add(1, Ordering::SeqCst);
                    d.ack();
                    Ok::<_, Error>(())
                }
            })
            .filter_map(|r| async move { r.err() })
            .collect::<Vec<_>>(),
    );
    eventually("a start", || async {
        handled.load(Ordering::SeqCst) >= 200
    })
    .await;
    server.kill();
    let errors = within("the run after the server died", run).await.unwrap();
    let addr = server.addr();
    assert!(!errors.is_empty());
    let err = &errors[0];
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr), "`{err}` names {addr}");
    eventually("every task ended", || async {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            <= live
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error_within_the_timeout() {
    // Nobody listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = open(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let err = within(
        "connecting to nobody",
        RedisSource::new(&client, "jobs", "g", "w")
            .timeout(Duration::from_millis(500))
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let client = open(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let started = tokio::time::Instant::now();
    let err = timeout(
        Duration::from_secs(5),
        RedisSource::new(&client, "jobs", "g", "w")
            .timeout(Duration::from_millis(300))
            .connect(),
    )
    .await
    .expect("a silent server made connect hang")
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = timeout(
        Duration::from_secs(5),
        RedisSink::new(&client, "out")
            .timeout(Duration::from_millis(300))
            .write_all(futures::stream::iter([[("a", 1)]])),
    )
    .await
    .expect("a silent server made write_all hang")
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    hold.abort();

    let err = open("redis//not a url").unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("redis//not a url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_a_stream_is_named_in_the_error() {
    let server = server_or_skip!("a_key_that_is_not_a_stream_is_named_in_the_error");
    let client = open(&server.url()).unwrap();
    let mut c = conn(&client).await;
    let _: () = driver::cmd("SET")
        .arg("plain")
        .arg("text")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = RedisSource::new(&client, "plain", "g", "w")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key, .. } if key == "plain"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`plain`"), "{err}");
    let err = RedisSink::new(&client, "plain")
        .write_all(futures::stream::iter([[("a", 1)]]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key, .. } if key == "plain"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_in_order_trims_and_names_the_key_when_refused() {
    let server = server_or_skip!("the_sink_writes_in_order_trims_and_names_the_key_when_refused");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "ordered", 1000).await;
    let jobs: Vec<u32> = all_jobs(&client, "ordered")
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(jobs, (0..1000).collect::<Vec<_>>());

    let items = futures::stream::iter(0..5000_u32).map(|i| [("n", i)]);
    let written = RedisSink::new(&client, "trimmed")
        .max_len_approx(100)
        .batch(100)
        .write_all(items)
        .await
        .unwrap();
    assert_eq!(written, 5000);
    let len = xlen(&client, "trimmed").await;
    assert!((100..1000).contains(&len), "about 100 kept, got {len}");

    let no_fields = futures::stream::iter([Vec::<(&str, &str)>::new()]);
    let err = RedisSink::new(&client, "refusing")
        .write_all(no_fields)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused { key, command: "XADD", .. } if key == "refusing"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`refusing`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_writes_each_result_and_its_ack_together() {
    let server = server_or_skip!("commit_writes_each_result_and_its_ack_together");
    let client = open(&server.url()).unwrap();
    add_jobs(&client, "jobs", 300).await;
    let ctx = TaskContext::background();
    let source = RedisSource::new(&client, "jobs", "g", "w")
        .context(&ctx)
        .connect()
        .await
        .unwrap();
    let committed = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&committed);
    let worker = tokio::spawn(
        source
            .par_map_unordered(8, move |d| {
                let n = Arc::clone(&n);
                async move {
                    let d = d?;
                    let job = job(&d);
                    let mut results = driver::pipe();
                    results
                        .cmd("XADD")
                        .arg("results")
                        .arg("*")
                        .arg("job")
                        .arg(job * 2)
                        .ignore();
                    let (_, ack) = d.into_parts();
                    ack.commit(results).await?;
                    n.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(())
                }
            })
            .collect::<Vec<_>>(),
    );
    eventually("300 commits", || async {
        committed.load(Ordering::SeqCst) == 300
    })
    .await;
    ctx.cancel();
    within("the worker", worker).await.unwrap();
    assert_eq!(xlen(&client, "results").await, 300);
    assert_eq!(
        pending(&client, "jobs", "g").await.0,
        0,
        "acknowledged in the same transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merged_with_fan_in_are_all_handled() {
    let server = server_or_skip!("shards_merged_with_fan_in_are_all_handled");
    let client = open(&server.url()).unwrap();
    let ctx = TaskContext::background();
    let mut shards = Vec::new();
    for i in 0..3 {
        let key = format!("jobs:{{{i}}}");
        add_jobs(&client, &key, 400).await;
        let source = RedisSource::new(&client, key.as_str(), "g", "w")
            .dead_letter(format!("{key}:dead"))
            .context(&ctx)
            .connect()
            .await
            .unwrap();
        shards.push(source);
    }
    let log = Log::default();
    let worker = tokio::spawn(work_merged(fan_in(shards), log.clone()));
    eventually("three shards", || async { log.len() >= 1200 }).await;
    ctx.cancel();
    within("the worker", worker).await.unwrap();
    let mut per_job: HashMap<u32, usize> = HashMap::new();
    for job in log.jobs() {
        *per_job.entry(job).or_default() += 1;
    }
    assert_eq!(per_job.len(), 400);
    assert!(per_job.values().all(|&n| n == 3), "each job once per shard");
    for i in 0..3 {
        let key = format!("jobs:{{{i}}}");
        eventually("the shard's acks", || async {
            pending(&client, &key, "g").await.0 == 0
        })
        .await;
    }
}

async fn work_merged(
    source: impl futures::Stream<Item = Result<Delivery<Fields>, Error>> + Send + 'static,
    log: Log,
) {
    source
        .par_map_unordered(8, move |d| {
            let log = log.clone();
            async move {
                let d = d?;
                log.record("w", job(&d), d.delivery_count());
                d.ack_after(|_| async { Ok::<_, String>(()) })
                    .await
                    .map_err(BoxError::from)
            }
        })
        .for_each(|_| async {})
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_context_the_source_and_the_sink_take_the_current_one() {
    let server = server_or_skip!("without_a_context_the_source_and_the_sink_take_the_current_one");
    let client = open(&server.url()).unwrap();
    let ctx = TaskContext::background();
    let mut source = ctx
        .scope(RedisSource::new(&client, "empty", "g", "w").connect())
        .await
        .unwrap();
    ctx.cancel();
    let first = within("the stopped source", source.next()).await;
    assert!(matches!(first, Some(Err(Error::Stopped(_)))), "{first:?}");
    assert!(source.is_terminated());

    // The sink takes the context current where it writes.
    let sink = RedisSink::new(&client, "out");
    let items = futures::stream::iter([[("a", 1)]]);
    let err = within("the stopped sink", ctx.scope(sink.write_all(items)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Stopped(ContextError::Cancelled)),
        "{err:?}"
    );
    assert_eq!(xlen(&client, "out").await, 0);
}

#[test]
#[should_panic(expected = "`prefetch` must be at least 1")]
fn a_zero_prefetch_panics_naming_it() {
    let client = open("redis://127.0.0.1:1/").unwrap();
    let _ = RedisSource::new(&client, "k", "g", "c").prefetch(0);
}

#[test]
#[should_panic(expected = "`max_deliveries` must be at least 1")]
fn zero_max_deliveries_panics_naming_it() {
    let client = open("redis://127.0.0.1:1/").unwrap();
    let _ = RedisSource::new(&client, "k", "g", "c").max_deliveries(0);
}

#[test]
#[should_panic(expected = "`batch` must be at least 1")]
fn a_zero_sink_batch_panics_naming_it() {
    let client = open("redis://127.0.0.1:1/").unwrap();
    let _ = RedisSink::new(&client, "k").batch(0);
}
