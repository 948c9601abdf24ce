//! The Redis Streams source against the loop users write by hand, on a real
//! `redis-server` on loopback (started here; the bench is skipped without the
//! binary).
//!
//! * `redis/consume`: entries already in the stream → read → trivial handle →
//!   acknowledged (timed until the server shows nothing pending). tokio-conc:
//!   `RedisSource` + `par_map_unordered(8, ..)` + `ack`; by hand: one
//!   `XREADGROUP COUNT 1` and one `XACK` per entry.
//! * `redis/end_to_end`: the same with the adding timed too — tokio-conc's
//!   `RedisSink` (pipelined `XADD`) feeding the source concurrently; by hand,
//!   one `XADD` per entry before the loop reads it.
//!
//! Run with `cargo bench --features redis --bench redis`. Quote the ratio of
//! the two throughputs of one run; the machine's load moves both.

#[allow(dead_code)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use redis_server::RedisServer;
use tokio::runtime::Runtime;
use tokio_conc::prelude::*;
use tokio_conc::redis::driver::aio::MultiplexedConnection;
use tokio_conc::redis::driver::{self, Value};
use tokio_conc::redis::{Client, RedisSink, RedisSource};

/// Entries per iteration: the batched source is fast enough for many, the
/// per-entry loop is not.
const BATCHED: u64 = 20_000;
const BY_HAND: u64 = 2_000;

static KEYS: AtomicU64 = AtomicU64::new(0);

fn fresh_key() -> String {
    format!("bench-{}", KEYS.fetch_add(1, Ordering::Relaxed))
}

async fn fill(client: &Client, key: &str, n: u64) {
    let items = futures::stream::iter(0..n).map(|i| [("job", i)]);
    RedisSink::new(client, key).write_all(items).await.unwrap();
}

async fn create_group(conn: &mut MultiplexedConnection, key: &str) {
    let _: () = driver::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .unwrap();
}

async fn wait_until_nothing_pending(conn: &mut MultiplexedConnection, key: &str) {
    loop {
        let (pending, ..): (u64, Value, Value, Value) = driver::cmd("XPENDING")
            .arg(key)
            .arg("g")
            .query_async(conn)
            .await
            .unwrap();
        if pending == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

async fn drop_key(conn: &mut MultiplexedConnection, key: &str) {
    let _: () = driver::cmd("DEL").arg(key).query_async(conn).await.unwrap();
}

/// tokio-conc: read `n` entries on 8 workers, acknowledging each; `prefetch`
/// `None` keeps the default (128).
async fn batched(
    client: &Client,
    conn: &mut MultiplexedConnection,
    key: &str,
    n: u64,
    prefetch: Option<usize>,
) {
    let mut source = RedisSource::new(client, key, "g", "bench");
    if let Some(p) = prefetch {
        source = source.prefetch(p);
    }
    let source = source.connect().await.unwrap();
    source
        .par_map_unordered(8, |d| async move {
            let d = d.unwrap();
            black_box(d.fields().len());
            d.ack();
        })
        .take(n as usize)
        .for_each(|()| async {})
        .await;
    wait_until_nothing_pending(conn, key).await;
}

/// By hand: `XREADGROUP COUNT 1`, handle, `XACK`, until `n` are done.
async fn one_by_one(conn: &mut MultiplexedConnection, key: &str, n: u64) {
    let mut done = 0;
    while done < n {
        let reply: Value = driver::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("bench")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .query_async(conn)
            .await
            .unwrap();
        let reply: driver::streams::StreamReadReply = driver::from_redis_value(reply).unwrap();
        for stream in reply.keys {
            for entry in stream.ids {
                black_box(entry.map.len());
                let _: u64 = driver::cmd("XACK")
                    .arg(key)
                    .arg("g")
                    .arg(&entry.id)
                    .query_async(conn)
                    .await
                    .unwrap();
                done += 1;
            }
        }
    }
}

async fn add_one_by_one(conn: &mut MultiplexedConnection, key: &str, n: u64) {
    for i in 0..n {
        let _: String = driver::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("job")
            .arg(i)
            .query_async(conn)
            .await
            .unwrap();
    }
}

/// One run of `n` entries on a fresh key; with `timed_add`, adding them is
/// timed too. Returns the time taken.
async fn one_run(
    client: &Client,
    conn: &mut MultiplexedConnection,
    n: u64,
    prefetch: Option<usize>,
    timed_add: bool,
) -> Duration {
    let key = fresh_key();
    create_group(conn, &key).await;
    if !timed_add {
        fill(client, &key, n).await;
    }
    let start = Instant::now();
    match (n == BATCHED, timed_add) {
        (true, false) => batched(client, conn, &key, n, prefetch).await,
        (true, true) => {
            let producer = {
                let (client, key) = (client.clone(), key.clone());
                tokio::spawn(async move { fill(&client, &key, n).await })
            };
            batched(client, conn, &key, n, prefetch).await;
            producer.await.unwrap();
        }
        (false, timed_add) => {
            if timed_add {
                add_one_by_one(conn, &key, n).await;
            }
            one_by_one(conn, &key, n).await;
        }
    }
    let took = start.elapsed();
    drop_key(conn, &key).await;
    took
}

/// `redis/consume` (entries added beforehand) or `redis/end_to_end` (adding
/// timed too).
fn throughput(c: &mut Criterion, rt: &Runtime, client: &Client, timed_add: bool) {
    let (group_name, ours, by_hand) = if timed_add {
        (
            "redis/end_to_end",
            "tokio-conc sink + source",
            "XADD, XREADGROUP COUNT 1, XACK",
        )
    } else {
        (
            "redis/consume",
            "tokio-conc source",
            "XREADGROUP COUNT 1 + XACK",
        )
    };
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    let tuned = format!("{ours}, prefetch 1024");
    for (name, n, prefetch) in [
        (ours, BATCHED, None),
        (tuned.as_str(), BATCHED, Some(1024)),
        (by_hand, BY_HAND, None),
    ] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_run(client, &mut conn, n, prefetch, timed_add).await;
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

fn main() {
    let Some(server) = RedisServer::start("the redis bench") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = tokio_conc::redis::open(&server.url()).unwrap();
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c, &rt, &client, false);
    throughput(&mut c, &rt, &client, true);
    c.final_summary();
    drop(server);
}
