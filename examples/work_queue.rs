//! A work queue across processes on a Redis stream: a producer adds jobs,
//! any number of workers (on any machines) share them through one consumer
//! group, each running a `par_map_unordered` pool, and every result is
//! written to a `results` stream together with its job's acknowledgement.
//!
//! ```text
//! cargo run --features redis --example work_queue -- produce 3000
//! cargo run --features redis --example work_queue -- work alice &
//! cargo run --features redis --example work_queue -- work bob &
//! cargo run --features redis --example work_queue -- report 3000
//! ```
//!
//! Options (before or after the command): `--redis URL` (default
//! `redis://127.0.0.1:6379/`), and for `work`: `--job-ms MS` (how long a job
//! takes, default 10), `--claim-idle-ms MS` (how long a dead worker's jobs
//! wait before another worker takes them, default 3000). `reset` deletes the
//! keys. See `docs/distributed.md` for a run with a worker killed mid-way.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_conc::prelude::*;
use tokio_conc::redis::driver::aio::MultiplexedConnection;
use tokio_conc::redis::driver::{self, Value};
use tokio_conc::redis::{Client, Error, RedisSink, RedisSource};

const JOBS: &str = "jobs";
const GROUP: &str = "workers";
const RESULTS: &str = "results";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    url: String,
    job_ms: u64,
    claim_idle_ms: u64,
    command: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        url: "redis://127.0.0.1:6379/".to_owned(),
        job_ms: 10,
        claim_idle_ms: 3000,
        command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--redis" => options.url = value("--redis")?,
            "--job-ms" => {
                options.job_ms = value("--job-ms")?
                    .parse()
                    .map_err(|e| format!("--job-ms: {e}"))?
            }
            "--claim-idle-ms" => {
                options.claim_idle_ms = value("--claim-idle-ms")?
                    .parse()
                    .map_err(|e| format!("--claim-idle-ms: {e}"))?
            }
            _ => options.command.push(arg),
        }
    }
    Ok(options)
}

const USAGE: &str = "usage: work_queue [--redis URL] (produce N | work NAME [--job-ms MS] [--claim-idle-ms MS] | report N | reset)";

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let command: Vec<&str> = options.command.iter().map(String::as_str).collect();
    let outcome = match command.as_slice() {
        ["produce", n] => match n.parse() {
            Ok(n) => produce(&options, n).await,
            Err(_) => Err(format!("not a number: {n}").into()),
        },
        ["work", name] => work(&options, name).await,
        ["report", n] => match n.parse() {
            Ok(n) => report(&options, n).await,
            Err(_) => Err(format!("not a number: {n}").into()),
        },
        ["reset"] => reset(&options).await,
        _ => Err(USAGE.into()),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("work_queue: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(options: &Options) -> Result<Client, Error> {
    tokio_conc::redis::open(&options.url)
}

async fn connection(client: &Client) -> Result<MultiplexedConnection, BoxError> {
    let config = driver::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// `produce N`: adds jobs 0..N with pipelined `XADD`s.
async fn produce(options: &Options, n: u64) -> Result<ExitCode, BoxError> {
    let client = client(options)?;
    let jobs = futures::stream::iter(0..n).map(|job| [("job", job)]);
    let added = RedisSink::new(&client, JOBS).write_all(jobs).await?;
    println!("added {added} jobs to `{JOBS}`");
    Ok(ExitCode::SUCCESS)
}

/// `work NAME`: handles jobs until nothing is left to deliver and nothing is
/// pending in the group (a dead worker's jobs count as pending until another
/// worker has reclaimed and finished them).
async fn work(options: &Options, name: &str) -> Result<ExitCode, BoxError> {
    let client = client(options)?;
    let source = RedisSource::new(&client, JOBS, GROUP, name)
        // Slow jobs: hold few beyond the 8 running, so a killed worker takes
        // few jobs down with it and an idle one finds work.
        .prefetch(16)
        .claim_idle(Duration::from_millis(options.claim_idle_ms))
        .decode(|fields| fields.parse::<u64>("job"))
        .connect()
        .await?;
    let mut watcher = connection(&client).await?;
    let drained = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if matches!(is_drained(&mut watcher).await, Ok(true)) {
                return;
            }
        }
    };

    let job_time = Duration::from_millis(options.job_ms);
    let handled = Arc::new(AtomicU64::new(0));
    let worker = name.to_owned();
    let count = Arc::clone(&handled);
    let failures = source
        .take_until(Box::pin(drained)) // close the source once the queue is drained
        .par_map_unordered(Workers::new(8).name("work_queue"), move |delivery| {
            let (worker, count) = (worker.clone(), Arc::clone(&count));
            async move {
                let delivery = delivery?;
                let job = *delivery.fields();
                tokio::time::sleep(job_time).await; // the work
                let mut result = driver::pipe();
                result
                    .cmd("XADD")
                    .arg(RESULTS)
                    .arg("*")
                    .arg("job")
                    .arg(job)
                    .arg("worker")
                    .arg(&worker)
                    .arg("result")
                    .arg(job * job)
                    .ignore();
                // The result and the job's acknowledgement in one transaction:
                // a worker killed at any point leaves either both or neither.
                let (_, ack) = delivery.into_parts();
                ack.commit(result).await?;
                count.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>(())
            }
        })
        .filter_map(|r| async move { r.err() });
    let mut failures = std::pin::pin!(failures);
    while let Some(error) = failures.next().await {
        eprintln!("{name}: {error}");
        if !matches!(error, Error::Stopped(_)) {
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "{name}: handled {} jobs; queue drained",
        handled.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}

/// Nothing pending in the group and everything in the stream delivered.
async fn is_drained(conn: &mut MultiplexedConnection) -> Result<bool, BoxError> {
    let stream: HashMap<String, Value> = driver::cmd("XINFO")
        .arg("STREAM")
        .arg(JOBS)
        .query_async(conn)
        .await?;
    let last: String = driver::from_redis_value(stream["last-generated-id"].clone())?;
    let groups: Vec<HashMap<String, Value>> = driver::cmd("XINFO")
        .arg("GROUPS")
        .arg(JOBS)
        .query_async(conn)
        .await?;
    for group in groups {
        let name: String = driver::from_redis_value(group["name"].clone())?;
        if name == GROUP {
            let pending: u64 = driver::from_redis_value(group["pending"].clone())?;
            let delivered: String = driver::from_redis_value(group["last-delivered-id"].clone())?;
            return Ok(pending == 0 && delivered == last);
        }
    }
    Ok(false)
}

/// `report N`: every job 0..N must appear exactly once in `results`.
async fn report(options: &Options, n: u64) -> Result<ExitCode, BoxError> {
    let client = client(options)?;
    let mut conn = connection(&client).await?;
    let mut per_job = vec![0_u32; n as usize];
    let mut per_worker: HashMap<String, u64> = HashMap::new();
    let mut after = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = driver::cmd("XRANGE")
            .arg(RESULTS)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = format!("({last}");
        for (_, fields) in &page {
            let job: usize = fields["job"].parse()?;
            if let Some(slot) = per_job.get_mut(job) {
                *slot += 1;
            }
            *per_worker.entry(fields["worker"].clone()).or_default() += 1;
        }
    }
    let missing = per_job.iter().filter(|&&c| c == 0).count();
    let twice = per_job.iter().filter(|&&c| c > 1).count();
    let mut workers: Vec<_> = per_worker.into_iter().collect();
    workers.sort();
    for (worker, count) in &workers {
        println!("{worker}: {count} results");
    }
    println!(
        "jobs: {n}; done once: {}; missing: {missing}; done more than once: {twice}",
        per_job.iter().filter(|&&c| c == 1).count()
    );
    Ok(if missing == 0 && twice == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `reset`: deletes the jobs, results and dead-letter streams.
async fn reset(options: &Options) -> Result<ExitCode, BoxError> {
    let client = client(options)?;
    let mut conn = connection(&client).await?;
    let _: u64 = driver::cmd("DEL")
        .arg(JOBS)
        .arg(RESULTS)
        .arg(format!("{JOBS}:dead"))
        .query_async(&mut conn)
        .await?;
    println!("deleted `{JOBS}`, `{RESULTS}` and `{JOBS}:dead`");
    Ok(ExitCode::SUCCESS)
}
