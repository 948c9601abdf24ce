//! The generators' guarantees: laziness, the prefetch bound, drop and
//! cancellation stop the producer, errors and panics reach the consumer.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_conc::generator::{Closed, Yielder};
use tokio_conc::prelude::*;

mod common;

use common::alive_tasks;

/// Sets its flag when dropped: proves a producer was dropped or finished.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Lets other tasks run until `done` holds (or gives up after many turns).
async fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A producer that sends 0, 1, 2, … until `send` fails, then reports why.
async fn count_until_closed(
    y: Yielder<u32>,
    report: oneshot::Sender<Closed>,
) -> Result<(), Closed> {
    let mut n = 0;
    let closed = loop {
        if let Err(closed) = y.send(n).await {
            break closed;
        }
        n += 1;
    };
    let _ = report.send(closed.clone());
    Err(closed)
}

#[tokio::test]
async fn lazy_producer_never_runs_ahead_of_the_consumer() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let mut s = generate(move |y: Yielder<usize>| async move {
        for i in 0.. {
            counter.fetch_add(1, Ordering::SeqCst);
            y.send(i).await?;
        }
        Ok(())
    });
    tokio::task::yield_now().await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "nothing runs before the first poll"
    );
    for k in 1..=5 {
        assert_eq!(s.next().await, Some(k - 1));
        settle(|| false).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            k,
            "one send per item asked for"
        );
    }
}

/// The defect: an endless producer, the most natural Go-style generator,
/// failed to compile with "`!: ProducerOutput` is not satisfied". Every form
/// here is written without a type annotation on purpose: this test is the
/// compile check.
#[tokio::test]
async fn natural_producers_compile_without_annotations() {
    // Endless, `?` on every send.
    let naturals = generate(|y| async move {
        let mut i = 0;
        loop {
            y.send(i).await?;
            i += 1;
        }
    });
    assert_eq!(naturals.take(3).collect::<Vec<u32>>().await, [0, 1, 2]);

    // A `for` loop ending in `Ok(())`.
    let evens = generate(|y| async move {
        for i in 0..3 {
            y.send(i * 2).await?;
        }
        Ok(())
    });
    assert_eq!(evens.collect::<Vec<u32>>().await, [0, 2, 4]);

    // A producer that ignores `Closed` and just returns.
    let once = generate(|y| async move {
        let _ = y.send("once").await;
        Ok(())
    });
    assert_eq!(once.collect::<Vec<_>>().await, ["once"]);

    // The same forms running ahead.
    let ahead = generate_ahead(2, |y| async move {
        let mut i = 0;
        loop {
            y.send(i).await?;
            i += 1;
        }
    });
    assert_eq!(ahead.take(3).collect::<Vec<u64>>().await, [0, 1, 2]);
    let ahead = generate_ahead(2, |y| async move {
        for word in ["a", "b"] {
            y.send(word).await?;
        }
        Ok(())
    });
    assert_eq!(ahead.collect::<Vec<_>>().await, ["a", "b"]);

    // try_generate: the error type is the caller's, named where it is used.
    let fallible = try_generate(|y| async move {
        let mut i = 0;
        loop {
            y.send(i).await?;
            i += 1;
        }
    });
    let first: Vec<Result<u8, Closed>> = fallible.take(2).collect().await;
    assert_eq!(first, [Ok(0), Ok(1)]);
    let parsed = try_generate(|y| async move {
        for text in ["1", "x"] {
            y.send(text.parse::<u8>()?).await?;
        }
        Ok(())
    });
    let all: Vec<Result<u8, Box<dyn std::error::Error + Send + Sync>>> = parsed.collect().await;
    assert_eq!(all.len(), 2);
    assert!(all[1].is_err());
}

#[tokio::test]
async fn lazy_generator_ends_when_the_producer_returns() {
    let s = generate(|y: Yielder<&str>| async move {
        y.send("a").await?;
        y.send("b").await?;
        Ok(())
    });
    assert_eq!(s.collect::<Vec<_>>().await, ["a", "b"]);
}

#[tokio::test]
async fn dropping_a_lazy_generator_drops_its_producer() {
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let mut s = generate(move |y: Yielder<u32>| async move {
        let _guard = guard;
        for i in 0.. {
            y.send(i).await?;
        }
        Ok(())
    });
    assert_eq!(s.next().await, Some(0));
    assert!(!dropped.load(Ordering::SeqCst));
    drop(s);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_yielder_moved_to_another_task_still_delivers_and_sees_the_drop() {
    let (done_tx, done_rx) = oneshot::channel();
    let mut s = generate(move |y: Yielder<u32>| async move {
        // The producer hands its yielder to a task and waits for it.
        let worker = tokio::spawn(count_until_closed(y, done_tx));
        worker.await.unwrap()
    });
    let first: Vec<u32> = (&mut s).take(3).collect().await;
    assert_eq!(first, [0, 1, 2]);
    drop(s);
    let closed = timeout(Duration::from_secs(5), done_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed, Closed::default());
}

#[tokio::test]
async fn a_cancelled_send_takes_its_item_back() {
    let s = generate(|y: Yielder<u32>| async move {
        // Polled once, then dropped: the consumer must never see 1.
        assert!(y.send(1).now_or_never().is_none());
        y.send(2).await
    });
    assert_eq!(s.collect::<Vec<_>>().await, [2]);
}

#[tokio::test]
async fn try_generate_yields_the_error_last() {
    let s = try_generate(|y: Yielder<u32>| async move {
        y.send(1).await.map_err(|_| "closed")?;
        y.send(2).await.map_err(|_| "closed")?;
        Err("broken")
    });
    assert_eq!(s.collect::<Vec<_>>().await, [Ok(1), Ok(2), Err("broken")]);

    let fine = try_generate(|y: Yielder<u32>| async move {
        let _ = y.send(7).await;
        Ok::<(), &str>(())
    });
    assert_eq!(fine.collect::<Vec<_>>().await, [Ok(7)]);
}

#[tokio::test]
async fn try_generate_works_with_question_mark_on_send() {
    let s = try_generate(|y: Yielder<u8>| async move {
        y.send(1).await?;
        Err::<(), Box<dyn std::error::Error + Send + Sync>>("boom".into())
    });
    let items: Vec<_> = s.collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(*items[0].as_ref().unwrap(), 1);
    assert_eq!(items[1].as_ref().unwrap_err().to_string(), "boom");
}

#[tokio::test]
async fn generate_ahead_runs_at_most_buffer_items_ahead() {
    const BUFFER: usize = 4;
    let started = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let (s, c) = (Arc::clone(&started), Arc::clone(&completed));
    let mut ahead = generate_ahead(BUFFER, move |y: Yielder<usize>| async move {
        for i in 0..1000 {
            s.fetch_add(1, Ordering::SeqCst);
            y.send(i).await?;
            c.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    settle(|| started.load(Ordering::SeqCst) > BUFFER).await;
    settle(|| false).await;
    // As in Go: `BUFFER` items buffered, one more held in a waiting send.
    assert_eq!(completed.load(Ordering::SeqCst), BUFFER);
    assert_eq!(started.load(Ordering::SeqCst), BUFFER + 1);
    assert_eq!(ahead.buffered_len(), BUFFER);
    for taken in 1..=10 {
        assert_eq!(ahead.next().await, Some(taken - 1));
        settle(|| false).await;
        assert_eq!(completed.load(Ordering::SeqCst), taken + BUFFER);
        assert_eq!(started.load(Ordering::SeqCst), taken + BUFFER + 1);
    }
}

#[tokio::test]
async fn prefetch_pulls_at_most_buffer_items_ahead() {
    const BUFFER: usize = 3;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let mut s = stream::iter(0..1000)
        .inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .prefetch(BUFFER);
    settle(|| pulled.load(Ordering::SeqCst) >= BUFFER).await;
    settle(|| false).await;
    assert_eq!(pulled.load(Ordering::SeqCst), BUFFER);
    for taken in 1..=10 {
        assert_eq!(s.next().await, Some(taken - 1));
        settle(|| false).await;
        assert_eq!(pulled.load(Ordering::SeqCst), taken + BUFFER);
    }
}

#[tokio::test]
async fn dropping_generate_ahead_fails_send_and_ends_the_task() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let (closed_tx, closed_rx) = oneshot::channel();
    let mut s = generate_ahead(2, move |y: Yielder<u32>| async move {
        let _guard = guard;
        count_until_closed(y, closed_tx).await
    });
    assert_eq!(s.next().await, Some(0));
    settle(|| false).await; // the producer now waits in `send` on a full buffer
    assert_eq!(alive_tasks(), baseline + 1);
    drop(s);
    let closed = timeout(Duration::from_secs(5), closed_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        closed,
        Closed::default(),
        "the waiting send saw Err(Closed)"
    );
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_generate_ahead_stops_a_producer_that_ignores_closed() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let mut s = generate_ahead(1, move |y: Yielder<u32>| async move {
        let _guard = guard;
        let ignored = Arc::new(AtomicUsize::new(0));
        while ignored.load(Ordering::Relaxed) < usize::MAX {
            if y.send(1).await.is_err() {
                ignored.fetch_add(1, Ordering::Relaxed); // and keeps going
            }
        }
        Ok(())
    });
    assert_eq!(s.next().await, Some(1));
    drop(s);
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_generate_ahead_stops_a_producer_waiting_elsewhere() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let s = generate_ahead(1, move |y: Yielder<u32>| async move {
        let _guard = guard;
        let _ = y.send(1).await;
        pending().await
    });
    settle(|| s.buffered_len() == 1).await;
    drop(s);
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_prefetch_ends_its_task_and_drops_the_source() {
    let baseline = alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let source = stream::iter(0..).map(move |i| {
        let _ = &guard;
        i
    });
    let mut s = source.prefetch(2);
    assert_eq!(s.next().await, Some(0));
    assert_eq!(alive_tasks(), baseline + 1);
    drop(s);
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn cancelling_the_context_ends_a_lazy_generator_and_fails_send() {
    let ctx = TaskContext::background();
    let (closed_tx, closed_rx) = oneshot::channel();
    let mut s = generate(move |y: Yielder<u32>| async move {
        y.send(1).await?;
        let _ = closed_tx.send(y.send(2).await);
        Ok(())
    })
    .context(&ctx);
    assert_eq!(s.next().await, Some(1));
    ctx.cancel();
    assert_eq!(s.next().await, None);
    let sent = closed_rx.await.unwrap();
    assert_eq!(
        sent.unwrap_err().context_error(),
        Some(&ContextError::Cancelled)
    );
}

#[tokio::test]
async fn cancelling_the_context_wakes_a_consumer_whose_producer_waits_elsewhere() {
    let ctx = TaskContext::background();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(Arc::clone(&dropped));
    let mut s = generate(move |y: Yielder<u32>| async move {
        let _guard = guard;
        y.send(1).await?;
        pending().await
    })
    .context(&ctx);
    assert_eq!(s.next().await, Some(1));
    let canceller = ctx.clone();
    tokio::spawn(async move { canceller.cancel() });
    let end = timeout(Duration::from_secs(5), s.next()).await.unwrap();
    assert_eq!(end, None);
    assert!(dropped.load(Ordering::SeqCst), "the producer was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_ends_the_generator_with_deadline_exceeded() {
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(50));
    let (closed_tx, closed_rx) = oneshot::channel();
    let mut s = generate_ahead(1, move |y| count_until_closed(y, closed_tx)).context(&ctx);
    // A slow consumer: one item every 20 ms, so the producer waits in `send`.
    let mut got = Vec::new();
    while let Some(n) = s.next().await {
        got.push(n);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, [0, 1, 2]);
    let closed = closed_rx.await.unwrap();
    assert_eq!(
        closed.context_error(),
        Some(&ContextError::DeadlineExceeded)
    );
}

#[tokio::test]
async fn cancelling_generate_ahead_ends_the_stream_at_once_and_the_task() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background();
    let (closed_tx, closed_rx) = oneshot::channel();
    let mut s = generate_ahead(8, move |y| count_until_closed(y, closed_tx)).context(&ctx);
    settle(|| s.buffered_len() == 8).await;
    assert_eq!(s.next().await, Some(0));
    ctx.cancel_with(std::io::Error::other("client went away"));
    assert_eq!(s.next().await, None, "buffered items are dropped on cancel");
    let closed = timeout(Duration::from_secs(5), closed_rx)
        .await
        .unwrap()
        .unwrap();
    let reason = closed.context_error().unwrap();
    assert_eq!(reason.cause().unwrap().to_string(), "client went away");
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline);
    drop(s);
}

#[tokio::test]
#[should_panic(expected = "producer failed")]
async fn a_panic_in_a_producer_task_reaches_the_consumer() {
    let s = generate_ahead(2, |y: Yielder<u32>| async move {
        let _ = y.send(1).await;
        if y.send(2).await.is_ok() {
            panic!("producer failed");
        }
        Ok(())
    });
    let _ = s.collect::<Vec<_>>().await;
}

#[tokio::test]
#[should_panic(expected = "source failed")]
async fn a_panic_in_a_prefetched_source_reaches_the_consumer() {
    let s = stream::iter(0..3)
        .map(|i| if i == 2 { panic!("source failed") } else { i })
        .prefetch(2);
    let _ = s.collect::<Vec<_>>().await;
}

#[tokio::test]
#[should_panic(expected = "generate_ahead: `buffer` must be at least 1, got 0")]
async fn generate_ahead_with_zero_buffer_panics() {
    let _ = generate_ahead(0, |y: Yielder<u8>| async move { y.send(1).await });
}

#[tokio::test]
#[should_panic(expected = "prefetch: `buffer` must be at least 1, got 0")]
async fn prefetch_of_zero_panics() {
    let _ = stream::iter(0..3).prefetch(0);
}

#[test]
#[should_panic(expected = "generate_ahead must be called within a Tokio runtime")]
fn generate_ahead_outside_a_runtime_panics() {
    let _ = generate_ahead(1, |y: Yielder<u8>| async move { y.send(1).await });
}

#[test]
#[should_panic(expected = "prefetch must be called within a Tokio runtime")]
fn prefetch_outside_a_runtime_panics() {
    let _ = stream::iter(0..3).prefetch(1);
}

#[test]
fn a_lazy_generator_needs_no_runtime() {
    let s = generate(|y: Yielder<u8>| async move {
        for i in 0..3 {
            y.send(i).await?;
        }
        Ok(())
    });
    let items = futures::executor::block_on(s.collect::<Vec<_>>());
    assert_eq!(items, [0, 1, 2]);
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn generators_are_send() {
    let lazy = generate(|y: Yielder<String>| async move { y.send(String::new()).await });
    assert_send(&lazy);
    let ahead = generate_ahead(1, |y: Yielder<String>| async move {
        y.send(String::new()).await
    });
    assert_send(&ahead);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_generator_yields_exactly_what_was_sent(
        items in proptest::collection::vec(any::<u16>(), 0..60),
        buffer in 1_usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (lazy, ahead, prefetched) = rt.block_on(async {
            let a = items.clone();
            let lazy: Vec<u16> = generate(move |y: Yielder<u16>| async move {
                for i in a {
                    y.send(i).await?;
                }
                Ok(())
            })
            .collect()
            .await;
            let b = items.clone();
            let ahead: Vec<u16> = generate_ahead(buffer, move |y: Yielder<u16>| async move {
                for i in b {
                    y.send(i).await?;
                }
                Ok(())
            })
            .collect()
            .await;
            let prefetched: Vec<u16> = stream::iter(items.clone()).prefetch(buffer).collect().await;
            (lazy, ahead, prefetched)
        });
        prop_assert_eq!(&lazy, &items);
        prop_assert_eq!(&ahead, &items);
        prop_assert_eq!(&prefetched, &items);
    }
}

/// A producer that sends 0, 1, 2, … one every 10 ms until `send` fails.
async fn tick_every_10ms(y: Yielder<u32>) -> Result<(), Closed> {
    let mut n = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        y.send(n).await?;
        n += 1;
    }
}

/// Drains `s`, asserting after every item that no task beyond `allowed` above
/// `baseline` is alive; returns how many items came and when the stream ended.
async fn drain_counting_tasks<S>(mut s: S, baseline: usize, allowed: usize) -> (u32, Duration)
where
    S: futures::Stream + Unpin,
{
    let start = tokio::time::Instant::now();
    let mut items = 0;
    while timeout(Duration::from_secs(60), s.next())
        .await
        .expect("the deadline did not end the generator: hung")
        .is_some()
    {
        items += 1;
        assert_eq!(alive_tasks(), baseline + allowed, "after item {items}");
    }
    (items, start.elapsed())
}

/// A context with a deadline used to cost a timer task per context the
/// moment a generator bound to it took its token; waiting on the context
/// itself needs none, and the deadline still ends the stream on time.
#[tokio::test(start_paused = true)]
async fn a_generator_bound_to_a_deadline_spawns_no_timer_task_and_stops_at_it() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(105));
    let s = generate(tick_every_10ms).context(&ctx);
    assert_eq!(alive_tasks(), baseline, "a lazy generator spawns nothing");
    let (items, took) = drain_counting_tasks(s, baseline, 0).await;
    assert_eq!((items, took), (10, Duration::from_millis(105)));
    assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));

    // Inherited from the current context, the same.
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(105));
    let s = ctx.scope(async { generate(tick_every_10ms) }).await;
    let (items, took) = drain_counting_tasks(s, baseline, 0).await;
    assert_eq!((items, took), (10, Duration::from_millis(105)));
}

/// The generators that run ahead keep exactly their one producer task.
#[tokio::test(start_paused = true)]
async fn a_generator_running_ahead_to_a_deadline_keeps_only_its_producer_task() {
    let baseline = alive_tasks();
    let ctx = TaskContext::background().with_timeout(Duration::from_millis(105));
    let s = generate_ahead(2, tick_every_10ms).context(&ctx);
    let (items, took) = drain_counting_tasks(s, baseline, 1).await;
    assert_eq!((items, took), (10, Duration::from_millis(105)));

    let ctx = TaskContext::background().with_timeout(Duration::from_millis(105));
    let s = generate(tick_every_10ms).prefetch(2).context(&ctx);
    let (items, took) = drain_counting_tasks(s, baseline, 1).await;
    assert_eq!((items, took), (10, Duration::from_millis(105)));
    settle(|| alive_tasks() == baseline).await;
    assert_eq!(alive_tasks(), baseline, "the producers ended");
}
