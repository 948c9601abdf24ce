//! Helpers shared by the pub/sub suites (`pubsub`, `pubsub_model`).

// Each suite uses its own subset.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_conc::pubsub::{SlowSubscriber, Subscription, Topic};

/// Long enough that only a hang reaches it.
pub const LONG: Duration = Duration::from_secs(10);

/// Every policy, in declaration order.
pub const POLICIES: [SlowSubscriber; 4] = [
    SlowSubscriber::Backpressure,
    SlowSubscriber::DropOldest,
    SlowSubscriber::DropNewest,
    SlowSubscriber::Disconnect,
];

/// One subscription of each policy, in [`POLICIES`] order.
pub fn one_of_each<T: Clone + Send + 'static>(topic: &Topic<T>) -> Vec<Subscription<T>> {
    POLICIES
        .iter()
        .map(|&policy| topic.subscribe_with(policy))
        .collect()
}

/// Counts the values of [`Tracked`] made (originals and clones) and dropped.
#[derive(Debug, Default)]
pub struct Census {
    made: AtomicUsize,
    clones: AtomicUsize,
    dropped: AtomicUsize,
}

impl Census {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A new message value.
    pub fn message(self: &Arc<Self>, id: u32) -> Tracked {
        self.made.fetch_add(1, Ordering::SeqCst);
        Tracked {
            id,
            census: Arc::clone(self),
        }
    }

    pub fn clones(&self) -> usize {
        self.clones.load(Ordering::SeqCst)
    }

    /// Values made and not dropped yet.
    pub fn alive(&self) -> usize {
        self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }

    pub fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A message that reports its clones and drops to a [`Census`].
#[derive(Debug)]
pub struct Tracked {
    pub id: u32,
    census: Arc<Census>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.census.clones.fetch_add(1, Ordering::SeqCst);
        self.census.message(self.id)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// The tasks' outputs, in order; a task that takes [`LONG`] is a hang of
/// `what`.
pub async fn join_within<T>(tasks: Vec<tokio::task::JoinHandle<T>>, what: &str) -> Vec<T> {
    let mut outputs = Vec::new();
    for task in tasks {
        let joined = tokio::time::timeout(LONG, task).await;
        outputs.push(joined.unwrap_or_else(|_| panic!("{what} hung")).unwrap());
    }
    outputs
}

pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (a bounded while) for the live task count to return to `baseline`: a
/// joined task is counted until its worker thread lets it go.
pub async fn tasks_back_to(baseline: usize) {
    let settled = async {
        while alive_tasks() != baseline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .is_err()
    {
        panic!("{} tasks alive, expected {baseline}", alive_tasks());
    }
}
