//! A worker pool, Go style: 50 jobs, 5 workers, every 10th job fails, and the
//! whole batch runs under a deadline.
//!
//! Run with `cargo run --example worker_pool`.

use std::time::Duration;

use tokio_conc::prelude::*;

/// Pretends to process one job: a little I/O, and job 10, 20, … fail.
async fn process(job: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if job % 10 == 0 {
        return Err(format!("job {job}: invalid input"));
    }
    Ok(job * 2)
}

#[tokio::main]
async fn main() {
    // Go: ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
    let ctx = TaskContext::background().with_timeout(Duration::from_secs(2));
    let pool = WorkerPool::new(Workers::new(5).buffer(10).context(&ctx).name("jobs"));

    let mut handles = Vec::new();
    for job in 1..=50 {
        // Waits while the queue is full, like a send on Go's buffered jobs channel.
        match pool.submit(process(job)).await {
            Ok(handle) => handles.push((job, handle)),
            Err(rejected) => println!("job {job} not submitted: {rejected}"),
        }
    }
    pool.close(); // Go: close(jobs)

    let (mut processed, mut failed) = (0, 0);
    for (job, handle) in handles {
        match handle.await {
            Ok(Ok(_doubled)) => processed += 1,
            Ok(Err(error)) => {
                failed += 1;
                println!("failed: {error}");
            }
            Err(stopped) => {
                failed += 1;
                println!("job {job} did not finish: {stopped}");
            }
        }
    }
    pool.join().await;

    println!("processed: {processed}, failed: {failed}");
    let stats = pool.stats();
    // The pool never looks inside outputs: a job that returned Err completed.
    // Its `failed` counts jobs left without an output (panicked, aborted, or
    // stopped by the deadline).
    println!(
        "pool counters: submitted {}, completed {}, without output {} (panicked {}), rejected {}",
        stats.submitted, stats.completed, stats.failed, stats.panicked, stats.rejected
    );
}
