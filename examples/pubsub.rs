//! Publisher and subscribers, done right: `cargo run --example pubsub`.
//!
//! The usual Go version keeps a slice of subscriber channels and, so that a
//! slow subscriber cannot hold the publisher up, starts a goroutine per
//! message per subscriber to do the send. Those goroutines pile up without
//! bound behind a slow subscriber, its messages arrive in any order, and
//! there is no way to unsubscribe or to close.
//!
//! Here a `Topic` gives each subscriber a bounded buffer and lets each one say
//! what happens when it falls behind; unsubscribing is dropping the
//! subscription, closing lets every subscriber drain, and the topic spawns
//! nothing.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::sleep;
use tokio_conc::prelude::*;
use tokio_conc::pubsub::WithGaps;

#[derive(Clone, Debug)]
struct Event {
    id: u32,
    text: String,
}

/// Must see every event: Backpressure (the default) makes the publisher wait
/// for it when its buffer is full.
async fn audit_log(mut events: Subscription<Event>) -> u32 {
    let mut seen = 0;
    while let Some(event) = events.next().await {
        assert_eq!(event.id, seen, "in publish order, none missing");
        seen += 1;
        sleep(Duration::from_millis(1)).await; // writing to disk
    }
    seen
}

/// Only the latest events matter: DropOldest, and it is told where it skipped.
async fn dashboard(mut events: WithGaps<Event>) -> (u32, u64) {
    let mut shown = 0;
    while let Some(item) = events.next().await {
        match item {
            Received::Message(event) => {
                shown += 1;
                if event.id % 10 == 0 {
                    println!("   dashboard: {}", event.text);
                }
            }
            Received::Missed(n) => println!("   dashboard: skipped {n} stale events"),
        }
        sleep(Duration::from_millis(5)).await; // a slow screen
    }
    (shown, events.missed())
}

/// Best effort and slow: cut off (Disconnect) rather than hold anyone up.
async fn webhook(mut events: Subscription<Event>) -> (u32, Option<String>) {
    let mut delivered = 0;
    while events.next().await.is_some() {
        delivered += 1;
        sleep(Duration::from_millis(20)).await; // a slow remote server
    }
    let why = events.end_reason().map(|reason| reason.to_string());
    (delivered, why)
}

#[tokio::main]
async fn main() {
    let news = Topic::new(8);

    let audit = tokio::spawn(audit_log(news.subscribe()));
    let screen = tokio::spawn(dashboard(
        news.subscribe_with(SlowSubscriber::DropOldest).with_gaps(),
    ));
    let hook = tokio::spawn(webhook(news.subscribe_with(SlowSubscriber::Disconnect)));

    // A subscriber that only wants the first few, then unsubscribes.
    let mut curious = Some(news.subscribe());

    for id in 0..60 {
        let event = Event {
            id,
            text: format!("event {id}"),
        };
        let reached = news.publish(event).await.expect("the topic is open");
        if let Some(sub) = curious.take_if(|_| id == 3) {
            let first: Vec<u32> = sub.take(4).map(|e| e.id).collect().await;
            // `take` dropped the subscription: unsubscribed.
            println!("   a curious subscriber read {first:?} and left");
        }
        if id % 20 == 0 {
            println!(
                "published {id}: reached {reached} of {} subscribers",
                news.subscriber_count()
            );
        }
    }
    news.close(); // every subscriber drains what it holds, then ends

    let audited = audit.await.unwrap();
    let (shown, skipped) = screen.await.unwrap();
    let (delivered, why) = hook.await.unwrap();
    println!("audit log: all {audited} events, in order");
    println!("dashboard: showed {shown}, skipped {skipped} (counted, never silent)");
    println!(
        "webhook: delivered {delivered}, then {}",
        why.unwrap_or_default()
    );
}
