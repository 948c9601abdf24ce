//! Property test: random sequences of publish, subscribe, drop, reads and
//! close against a plain sequential model of the four slow-subscriber policies.
//!
//! Each step compares what the topic did (publish counts or refusals, every
//! item a subscription yields — messages and gaps — `missed()`, the end reason,
//! the subscriber count) with the model. At the end every message value must
//! have been dropped exactly once.

mod pubsub_support;

use std::collections::VecDeque;

use futures::{FutureExt, StreamExt};
use proptest::prelude::*;
use pubsub_support::{Census, POLICIES, Tracked};
use tokio_conc::pubsub::{
    EndReason, PublishError, Received, SlowSubscriber, Topic, TryPublishError, WithGaps,
};

#[derive(Clone, Debug)]
enum Op {
    /// `publish(..).now_or_never()`: a publish that would wait is dropped.
    Publish,
    TryPublish,
    Subscribe(usize),
    /// Reads up to `n` items from subscription `i` (modulo those alive).
    Read(usize, usize),
    Drop(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Publish),
        3 => Just(Op::TryPublish),
        2 => (0..POLICIES.len()).prop_map(Op::Subscribe),
        3 => (any::<usize>(), 1..6_usize).prop_map(|(i, n)| Op::Read(i, n)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::Close),
    ]
}

/// What a publish did.
#[derive(Debug, PartialEq)]
enum Published {
    Reached(usize),
    Full,
    Closed,
}

struct ModelSub {
    policy: SlowSubscriber,
    held: VecDeque<(u64, u32)>,
    expected: u64,
    missed: u64,
    reported: u64,
    disconnected: bool,
    done: bool,
}

impl ModelSub {
    /// The next item, `None` for the end, or `Err(())` where it would wait.
    fn read(&mut self, closed: bool) -> Result<Option<Received<u32>>, ()> {
        if self.done {
            return Ok(None);
        }
        if let Some(&(seq, msg)) = self.held.front() {
            if seq != self.expected {
                let gap = seq - self.expected;
                self.expected = seq;
                self.reported += gap;
                return Ok(Some(Received::Missed(gap)));
            }
            self.held.pop_front();
            self.expected = seq + 1;
            return Ok(Some(Received::Message(msg)));
        }
        if !(self.disconnected || closed) {
            return Err(());
        }
        self.done = true;
        if self.missed > self.reported {
            let gap = self.missed - self.reported;
            self.reported = self.missed;
            return Ok(Some(Received::Missed(gap)));
        }
        Ok(None)
    }
}

struct Model {
    capacity: usize,
    replay: usize,
    next_seq: u64,
    kept: VecDeque<(u64, u32)>,
    subs: Vec<ModelSub>,
    closed: bool,
}

impl Model {
    fn publish(&mut self, msg: u32) -> Published {
        if self.closed {
            return Published::Closed;
        }
        let capacity = self.capacity;
        let live = |sub: &&mut ModelSub| !sub.disconnected;
        if self
            .subs
            .iter_mut()
            .filter(live)
            .any(|sub| sub.policy == SlowSubscriber::Backpressure && sub.held.len() >= capacity)
        {
            return Published::Full;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut reached = 0;
        for sub in self.subs.iter_mut().filter(live) {
            let full = sub.held.len() >= capacity;
            match (sub.policy, full) {
                (SlowSubscriber::DropNewest, true) => sub.missed += 1,
                (SlowSubscriber::Disconnect, true) => {
                    sub.missed += 1;
                    sub.disconnected = true;
                }
                (policy, _) => {
                    if full {
                        assert_eq!(policy, SlowSubscriber::DropOldest);
                        sub.held.pop_front();
                        sub.missed += 1;
                    }
                    sub.held.push_back((seq, msg));
                    reached += 1;
                }
            }
        }
        self.kept.push_back((seq, msg));
        while self.kept.len() > self.replay {
            self.kept.pop_front();
        }
        Published::Reached(reached)
    }

    fn subscribe(&mut self, policy: SlowSubscriber) {
        self.subs.push(ModelSub {
            policy,
            held: self.kept.clone(),
            expected: self.kept.front().map_or(self.next_seq, |(seq, _)| *seq),
            missed: 0,
            reported: 0,
            disconnected: false,
            done: false,
        });
    }

    fn subscriber_count(&self) -> usize {
        self.subs.iter().filter(|sub| !sub.disconnected).count()
    }

    fn end_reason(&self, i: usize) -> Option<EndReason> {
        if self.subs[i].disconnected {
            Some(EndReason::Disconnected)
        } else {
            self.closed.then_some(EndReason::Closed)
        }
    }
}

fn read_one(sub: &mut WithGaps<Tracked>) -> Result<Option<Received<u32>>, ()> {
    match sub.next().now_or_never() {
        None => Err(()),
        Some(item) => Ok(item.map(|item| match item {
            Received::Message(msg) => Received::Message(msg.id),
            Received::Missed(n) => Received::Missed(n),
        })),
    }
}

fn check(capacity: usize, replay: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let census = Census::new();
    {
        let topic = Topic::new(capacity).replay(replay);
        let mut subs: Vec<WithGaps<Tracked>> = Vec::new();
        let mut model = Model {
            capacity,
            replay,
            next_seq: 0,
            kept: VecDeque::new(),
            subs: Vec::new(),
            closed: false,
        };
        let mut next_msg = 0_u32;
        for op in ops.into_iter().chain([Op::Close]) {
            match op {
                Op::Publish | Op::TryPublish => {
                    let msg = census.message(next_msg);
                    let got = if matches!(op, Op::Publish) {
                        match topic.publish(msg).now_or_never() {
                            None => Published::Full,
                            Some(Ok(n)) => Published::Reached(n),
                            Some(Err(PublishError(_))) => Published::Closed,
                        }
                    } else {
                        match topic.try_publish(msg) {
                            Ok(n) => Published::Reached(n),
                            Err(TryPublishError::Full(_)) => Published::Full,
                            Err(TryPublishError::Closed(_)) => Published::Closed,
                        }
                    };
                    prop_assert_eq!(got, model.publish(next_msg), "publish {}", next_msg);
                    next_msg += 1;
                }
                Op::Subscribe(p) => {
                    subs.push(topic.subscribe_with(POLICIES[p]).with_gaps());
                    model.subscribe(POLICIES[p]);
                }
                Op::Read(i, n) if !subs.is_empty() => {
                    let i = i % subs.len();
                    for _ in 0..n {
                        let got = read_one(&mut subs[i]);
                        prop_assert_eq!(&got, &model.subs[i].read(model.closed), "sub {}", i);
                        if got.is_err() {
                            break;
                        }
                    }
                }
                Op::Drop(i) if !subs.is_empty() => {
                    let i = i % subs.len();
                    drop(subs.remove(i));
                    model.subs.remove(i);
                }
                Op::Read(..) | Op::Drop(_) => {}
                Op::Close => {
                    topic.close();
                    model.closed = true;
                }
            }
            prop_assert_eq!(topic.subscriber_count(), model.subscriber_count());
            for (i, sub) in subs.iter().enumerate() {
                prop_assert_eq!(sub.missed(), model.subs[i].missed, "missed, sub {}", i);
                prop_assert_eq!(sub.end_reason(), model.end_reason(i), "sub {}", i);
            }
        }
        // Closed: each subscription drains what it holds, then ends.
        for (i, sub) in subs.iter_mut().enumerate() {
            loop {
                let got = read_one(sub);
                prop_assert_eq!(&got, &model.subs[i].read(true), "draining sub {}", i);
                if got != Ok(None) {
                    continue;
                }
                break;
            }
        }
    }
    prop_assert_eq!(census.alive(), 0, "a message value was not dropped");
    prop_assert_eq!(census.made(), census.dropped());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_topic_behaves_like_the_sequential_model(
        (capacity, replay) in (1..5_usize).prop_flat_map(|c| (Just(c), 0..=c)),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        check(capacity, replay, ops)?;
    }
}
