use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio_conc::prelude::*;

const N: usize = 200_000;

fn spin(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0_u64;
    while start.elapsed() < d {
        for i in 0..100 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    x
}

async fn pool(workers: usize, n: usize, work: fn(u64) -> u64) -> Duration {
    let t = Instant::now();
    let pool = WorkerPool::new(Workers::new(workers).buffer(100));
    let p = pool.clone();
    let sub = tokio::spawn(async move {
        let mut hs = Vec::with_capacity(n);
        for i in 0..n as u64 {
            hs.push(p.submit(async move { work(i) }).await.unwrap());
        }
        hs
    });
    let mut s = 0;
    for h in sub.await.unwrap() {
        s += h.await.unwrap();
    }
    std::hint::black_box(s);
    t.elapsed()
}

async fn mutex_pool(workers: usize, n: usize, work: fn(u64) -> u64) -> Duration {
    let t = Instant::now();
    let (tx, rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(100);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..workers {
        let rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let j = rx.lock().await.recv().await;
                let Some((i, o)) = j else { break };
                let _ = o.send(work(i));
            }
        });
    }
    let sub = tokio::spawn(async move {
        let mut hs = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let (o, r) = oneshot::channel();
            tx.send((i, o)).await.unwrap();
            hs.push(r);
        }
        hs
    });
    let mut s = 0;
    for h in sub.await.unwrap() {
        s += h.await.unwrap();
    }
    std::hint::black_box(s);
    t.elapsed()
}

async fn round_robin(workers: usize, n: usize, work: fn(u64) -> u64) -> Duration {
    let t = Instant::now();
    let mut txs = Vec::new();
    for _ in 0..workers {
        let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(100 / workers + 1);
        tokio::spawn(async move {
            while let Some((i, o)) = rx.recv().await {
                let _ = o.send(work(i));
            }
        });
        txs.push(tx);
    }
    let sub = tokio::spawn(async move {
        let mut hs = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let (o, r) = oneshot::channel();
            txs[i as usize % workers].send((i, o)).await.unwrap();
            hs.push(r);
        }
        hs
    });
    let mut s = 0;
    for h in sub.await.unwrap() {
        s += h.await.unwrap();
    }
    std::hint::black_box(s);
    t.elapsed()
}

async fn spawn_each(workers: usize, n: usize, work: fn(u64) -> u64) -> Duration {
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(workers + 100));
    let sub = tokio::spawn(async move {
        let mut hs = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let p = sem.clone().acquire_owned().await.unwrap();
            hs.push(tokio::spawn(async move {
                let _p = p;
                work(i)
            }));
        }
        hs
    });
    let mut s = 0;
    for h in sub.await.unwrap() {
        s += h.await.unwrap();
    }
    std::hint::black_box(s);
    t.elapsed()
}

fn trivial(i: u64) -> u64 {
    i * 2
}
fn cpu(i: u64) -> u64 {
    spin(Duration::from_micros(20)) ^ i
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for round in 0..2 {
        println!("round {round}: trivial, {N} jobs (ns/job)");
        for w in [2, 8] {
            let ns = |d: Duration, n: usize| d.as_nanos() as f64 / n as f64;
            println!(
                "  w={w} WorkerPool {:.0}  mutex-pool {:.0}  round-robin {:.0}  spawn-each {:.0}",
                ns(pool(w, N, trivial).await, N),
                ns(mutex_pool(w, N, trivial).await, N),
                ns(round_robin(w, N, trivial).await, N),
                ns(spawn_each(w, N, trivial).await, N)
            );
        }
        let m = 5_000;
        let t = Instant::now();
        let mut s = 0;
        for i in 0..m as u64 {
            s += cpu(i);
        }
        std::hint::black_box(s);
        let seq = t.elapsed().as_secs_f64();
        println!(
            "  cpu 20us x {m}, 2 workers, speed-up over sequential: WorkerPool {:.2}  mutex-pool {:.2}  round-robin {:.2}  spawn-each {:.2}",
            seq / pool(2, m, cpu).await.as_secs_f64(),
            seq / mutex_pool(2, m, cpu).await.as_secs_f64(),
            seq / round_robin(2, m, cpu).await.as_secs_f64(),
            seq / spawn_each(2, m, cpu).await.as_secs_f64()
        );
    }
}
