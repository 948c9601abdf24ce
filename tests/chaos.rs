//! Chaos suite: random compositions of the operators, run on a multi-thread
//! runtime with a fault injected at a random point, checked against what the
//! contract promises.
//!
//! Each run is drawn from a seed: a source (`iter`, `generate`,
//! `generate_ahead`, `fan_in`), up to three stages (`par_map`,
//! `par_map_unordered`, `par_map_keyed`, `try_par_map`,
//! `try_par_map_unordered`, `rate_limit`, `prefetch`, `fan_out`, `broadcast`,
//! `partition`, the last three merged back with `fan_in`, their branches
//! maybe each on its own task), a `close_on(&shutdown)` on the source, and at
//! most one fault: the context cancelled (by the consumer or by a timer), the
//! output dropped early, a branch dropped, a panic in a user closure, an error
//! in a `try_` stage, a stalled consumer, a shutdown trigger. Then, from a
//! second stream of the same seed, maybe a `Topic` stage (a task publishes
//! the stream into a topic with random capacity, replay and one to three
//! subscribers of random policies, merged back with `fan_in`) and maybe a
//! `Pipeline` stage (two named stages, random order, workers, error policy
//! and retry), which the panic or error fault may move to. With
//! `CHAOS_STAGES=classic` none is added: seeds reported before they existed
//! replay the same plan.
//!
//! After each run:
//! - it finished within a bound (a real-time timeout: never a hang);
//! - with no fault (or a stall), the output is the sequential one: the same
//!   items in the same order where every stage keeps order, the same multiset
//!   otherwise (every item once per `broadcast` branch);
//! - with a fault, no item came out more often than it should, and where the
//!   contract says what survives (a dropped `fan_out` branch loses nothing; a
//!   shutdown drains every item that left the source; a skipped error loses
//!   only its item), exactly that came out;
//! - a topic accounts for every item it got: each subscription that ended
//!   yielded, in publish order, every published item (Backpressure), all but
//!   `missed()` of them (DropOldest, DropNewest), or a prefix of them, cut off
//!   with `missed() > 0` and `EndReason::Disconnected` (Disconnect); the
//!   publishes' counts add up to what the subscriptions received;
//! - a pipeline's stats account for every item of every stage
//!   (`items_in == items_out + errors + dropped`, nothing in flight);
//! - a panic in a user closure reached the consumer, and no other did;
//!   an injected error reached the consumer;
//! - every spawned task ended (live tasks back to zero);
//! - every item value (each clone too) was dropped exactly once: a
//!   drop-counting item type and a ledger.
//!
//! `CHAOS_RUNS` (default 600) sets how many runs; `CHAOS_SEED` the first seed
//! (default: a fixed one, so that a plain `cargo test` draws the same plans
//! every time and cannot fail on a plan nobody has seen; `CHAOS_SEED=clock`
//! draws it from the clock, for a hunt). A failure prints its seed and plan;
//! `CHAOS_SEED=<seed> CHAOS_RUNS=1 cargo test --release --test chaos`
//! replays it, and `CHAOS_REPEAT=<n>` runs each plan `n` times (a race may
//! need many tries to show again).

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio_conc::fan_out::Branches;
use tokio_conc::pipeline::{PipelineStats, Stage as PipelineStage};
use tokio_conc::prelude::*;
use tokio_conc::pubsub::EndReason;

/// How long one run may take before it counts as hung (real time: the
/// runtime is a real multi-thread one).
const RUN_BOUND: Duration = Duration::from_secs(30);
/// How long spawned tasks get to wind down once the run is over.
const SETTLE_BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A small deterministic random source (splitmix64): every choice of a run
// comes from its seed.

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
}

/// A value derived from the seed and an item, for choices made inside the
/// workers (which run in any order).
fn mix(seed: u64, id: u64) -> u64 {
    Rng(seed ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next()
}

// ---------------------------------------------------------------------------
// The item: every value, clones included, is entered in a ledger when made
// and marked when dropped.

#[derive(Default)]
struct Ledger {
    next: AtomicU64,
    /// serial → (item id, dropped)
    values: Mutex<HashMap<u64, (u64, bool)>>,
    dropped_twice: AtomicU64,
}

impl Ledger {
    fn make(self: &Arc<Self>, id: u64) -> Tracked {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        self.values.lock().unwrap().insert(serial, (id, false));
        Tracked {
            id,
            serial,
            ledger: Arc::clone(self),
        }
    }

    /// The ids of the values not dropped yet.
    fn live(&self) -> Vec<u64> {
        let values = self.values.lock().unwrap();
        values
            .values()
            .filter(|(_, dropped)| !dropped)
            .map(|(id, _)| *id)
            .collect()
    }
}

struct Tracked {
    id: u64,
    serial: u64,
    ledger: Arc<Ledger>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.ledger.make(self.id)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut values = self.ledger.values.lock().unwrap();
        match values.get_mut(&self.serial) {
            Some((_, dropped @ false)) => *dropped = true,
            _ => {
                self.ledger.dropped_twice.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.id)
    }
}

/// The error of the `try_` stages: injected, or the context's.
#[derive(Debug)]
enum ChaosError {
    Injected(u64),
    Stopped(ContextError),
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosError::Injected(id) => write!(f, "injected at #{id}"),
            ChaosError::Stopped(err) => write!(f, "stopped: {err}"),
        }
    }
}

impl From<ContextError> for ChaosError {
    fn from(err: ContextError) -> Self {
        ChaosError::Stopped(err)
    }
}

// ---------------------------------------------------------------------------
// A plan: what one run builds and which fault it injects.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Iter,
    Generate,
    GenerateAhead(usize),
    FanIn(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Split {
    FanOut,
    Broadcast { capacity: usize },
    Partition { capacity: usize },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    ParMap {
        workers: usize,
        buffer: usize,
    },
    ParMapUnordered {
        workers: usize,
    },
    ParMapKeyed {
        workers: usize,
        keys: u64,
    },
    TryParMap {
        workers: usize,
        ordered: bool,
    },
    RateLimit,
    Prefetch(usize),
    Split {
        split: Split,
        n: usize,
        spawn: bool,
    },
    /// A task publishes the stream into a topic; the first `subscribers` of
    /// `policies` subscribe before it starts, merged with `fan_in`.
    Topic {
        capacity: usize,
        replay: usize,
        subscribers: usize,
        policies: [SlowSubscriber; 3],
    },
    /// A pipeline of two stages: the user closure (with `workers`, and the
    /// error policy and retries drawn), then a pass-through.
    Pipeline {
        workers: usize,
        ordered: bool,
        skip_errors: bool,
        retry: bool,
    },
}

impl Stage {
    fn keeps_order(self) -> bool {
        matches!(
            self,
            Stage::ParMap { .. }
                | Stage::TryParMap { ordered: true, .. }
                | Stage::RateLimit
                | Stage::Prefetch(_)
                | Stage::Topic { subscribers: 1, .. }
                | Stage::Pipeline { ordered: true, .. }
        )
    }

    fn multiplies(self) -> u64 {
        match self {
            Stage::Split {
                split: Split::Broadcast { .. },
                n,
                ..
            } => n as u64,
            Stage::Topic { subscribers, .. } => subscribers as u64,
            _ => 1,
        }
    }

    fn runs_user_code(self) -> bool {
        matches!(
            self,
            Stage::ParMap { .. }
                | Stage::ParMapUnordered { .. }
                | Stage::ParMapKeyed { .. }
                | Stage::TryParMap { .. }
                | Stage::Pipeline { .. }
        )
    }

    /// Whether an error can be injected here.
    fn can_fail(self) -> bool {
        matches!(self, Stage::TryParMap { .. } | Stage::Pipeline { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    /// The consumer sleeps now and then: no item may be lost for it.
    Stall,
    /// The context is cancelled after the consumer got `after` items, or by
    /// a timer after `after` microseconds.
    Cancel {
        after: usize,
        by_timer: bool,
    },
    /// The consumer drops the output after `after` items.
    DropOutput {
        after: usize,
    },
    /// The first branch of the split stage `stage` is dropped after
    /// `after` items.
    DropBranch {
        stage: usize,
        after: usize,
    },
    /// The user closure of stage `stage` panics on item `id`.
    Panic {
        stage: usize,
        id: u64,
    },
    /// The `try_` or pipeline stage `stage` fails on item `id`.
    Error {
        stage: usize,
        id: u64,
    },
    /// The shutdown is triggered after the consumer got `after` items.
    Shutdown {
        after: usize,
    },
}

#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    items: u64,
    source: Source,
    stages: Vec<Stage>,
    fault: Fault,
}

impl Plan {
    fn draw(seed: u64) -> Plan {
        let mut rng = Rng(seed);
        let items = match rng.range(0, 9) {
            0 => rng.range(0, 3),
            _ => rng.range(4, 160),
        };
        let source = match rng.range(0, 3) {
            0 => Source::Iter,
            1 => Source::Generate,
            2 => Source::GenerateAhead(rng.size(1, 8)),
            _ => Source::FanIn(rng.size(1, 4)),
        };
        let mut stages: Vec<Stage> = (0..rng.range(1, 3)).map(|_| draw_stage(&mut rng)).collect();
        let fault = match rng.range(0, 9) {
            0 | 1 => Fault::None,
            2 => Fault::Stall,
            3 => Fault::Cancel {
                after: rng.size(0, items as usize),
                by_timer: rng.one_in(2),
            },
            4 => Fault::DropOutput {
                after: rng.size(0, items as usize),
            },
            5 => {
                let stage = stage_where(
                    &mut rng,
                    &mut stages,
                    |s| matches!(s, Stage::Split { .. }),
                    |rng| Stage::Split {
                        split: Split::FanOut,
                        n: rng.size(2, 4),
                        spawn: rng.one_in(2),
                    },
                );
                Fault::DropBranch {
                    stage,
                    after: rng.size(0, 8),
                }
            }
            6 => Fault::Panic {
                stage: stage_where(
                    &mut rng,
                    &mut stages,
                    |s| s.runs_user_code(),
                    |rng| Stage::ParMap {
                        workers: rng.size(1, 4),
                        buffer: rng.size(1, 4),
                    },
                ),
                id: rng.range(0, items.max(1) - 1),
            },
            7 => {
                let stage = stage_where(
                    &mut rng,
                    &mut stages,
                    |s| s.can_fail(),
                    |rng| Stage::TryParMap {
                        workers: rng.size(1, 4),
                        ordered: rng.one_in(2),
                    },
                );
                Fault::Error {
                    stage,
                    id: rng.range(0, items.max(1) - 1),
                }
            }
            _ => Fault::Shutdown {
                after: rng.size(0, items as usize),
            },
        };
        let mut plan = Plan {
            seed,
            items,
            source,
            stages,
            fault,
        };
        if std::env::var("CHAOS_STAGES").as_deref() != Ok("classic") {
            plan.add_topic_and_pipeline();
        }
        plan
    }

    /// Maybe a `Topic` stage and a `Pipeline` stage, drawn from a second
    /// stream of the seed so that a plan without them is the classic one;
    /// the panic or error fault may move to the pipeline stage.
    fn add_topic_and_pipeline(&mut self) {
        let mut rng = Rng(self.seed ^ 0x7091_C5B5_D1E5_0001);
        let insert = |stages: &mut Vec<Stage>, fault: &mut Fault, stage: Stage, rng: &mut Rng| {
            let at = rng.size(0, stages.len());
            stages.insert(at, stage);
            if let Fault::DropBranch { stage, .. }
            | Fault::Panic { stage, .. }
            | Fault::Error { stage, .. } = fault
            {
                if *stage >= at {
                    *stage += 1;
                }
            }
            at
        };
        if rng.one_in(3) {
            let policies = [(); 3].map(|()| match rng.range(0, 3) {
                0 => SlowSubscriber::Backpressure,
                1 => SlowSubscriber::DropOldest,
                2 => SlowSubscriber::DropNewest,
                _ => SlowSubscriber::Disconnect,
            });
            let capacity = rng.size(1, 8);
            let topic = Stage::Topic {
                capacity,
                // At most the capacity (the topic panics otherwise).
                replay: rng.size(0, 2.min(capacity)),
                subscribers: rng.size(1, 3),
                policies,
            };
            insert(&mut self.stages, &mut self.fault, topic, &mut rng);
        }
        if rng.one_in(3) {
            let pipeline = Stage::Pipeline {
                workers: rng.size(1, 4),
                ordered: rng.one_in(2),
                skip_errors: rng.one_in(2),
                retry: rng.one_in(3),
            };
            let at = insert(&mut self.stages, &mut self.fault, pipeline, &mut rng);
            if let Fault::Panic { stage, .. } | Fault::Error { stage, .. } = &mut self.fault {
                if rng.one_in(2) {
                    *stage = at;
                }
            }
        }
    }

    fn keeps_order(&self) -> bool {
        !matches!(self.source, Source::FanIn(n) if n > 1)
            && self.stages.iter().all(|stage| stage.keeps_order())
    }

    /// Whether a topic before stage `stage` may lose items: one of its
    /// subscriptions has a policy other than Backpressure.
    fn may_lose_before(&self, stage: usize) -> bool {
        self.stages[..stage].iter().any(|st| {
            matches!(st, Stage::Topic { subscribers, policies, .. }
                if policies[..*subscribers].iter().any(|&p| p != SlowSubscriber::Backpressure))
        })
    }

    /// How many times each item reaches the output at most: once per
    /// broadcast branch and per subscriber of a topic.
    fn multiplicity(&self) -> u64 {
        self.stages.iter().map(|stage| stage.multiplies()).product()
    }
}

fn draw_stage(rng: &mut Rng) -> Stage {
    match rng.range(0, 9) {
        0 | 1 => Stage::ParMap {
            workers: rng.size(1, 4),
            buffer: rng.size(1, 4),
        },
        2 => Stage::ParMapUnordered {
            workers: rng.size(1, 4),
        },
        3 => Stage::ParMapKeyed {
            workers: rng.size(1, 4),
            keys: rng.range(1, 6),
        },
        4 => Stage::TryParMap {
            workers: rng.size(1, 4),
            ordered: rng.one_in(2),
        },
        5 => Stage::RateLimit,
        6 => Stage::Prefetch(rng.size(1, 8)),
        7 => Stage::Split {
            split: Split::FanOut,
            n: rng.size(1, 4),
            spawn: rng.one_in(2),
        },
        8 => Stage::Split {
            split: Split::Broadcast {
                capacity: rng.size(1, 4),
            },
            n: rng.size(1, 3),
            spawn: rng.one_in(2),
        },
        _ => Stage::Split {
            split: Split::Partition {
                capacity: rng.size(1, 4),
            },
            n: rng.size(1, 4),
            spawn: rng.one_in(2),
        },
    }
}

/// The index of a stage `fits`, adding one made by `make` if none does.
fn stage_where(
    rng: &mut Rng,
    stages: &mut Vec<Stage>,
    fits: impl Fn(Stage) -> bool,
    make: impl FnOnce(&mut Rng) -> Stage,
) -> usize {
    let fitting: Vec<usize> = (0..stages.len()).filter(|&i| fits(stages[i])).collect();
    if fitting.is_empty() {
        let at = rng.size(0, stages.len());
        stages.insert(at, make(rng));
        at
    } else {
        fitting[rng.size(0, fitting.len() - 1)]
    }
}

// ---------------------------------------------------------------------------
// Building the plan.

/// What the stages and the consumer share in one run.
#[derive(Clone)]
struct Env {
    seed: u64,
    ledger: Arc<Ledger>,
    /// A user closure panicked on purpose.
    panicked: Arc<AtomicBool>,
    /// What the `try_` stages ended with.
    errors: Arc<Mutex<Vec<String>>>,
    /// How many calls returned the injected error (a retried item counts
    /// once per attempt).
    injected: Arc<AtomicU64>,
    /// The ids that left the source (after `close_on`), in order.
    left_source: Arc<Mutex<Vec<u64>>>,
    /// What each `Topic` stage (by index) published and delivered.
    topics: Arc<Mutex<HashMap<usize, Arc<Mutex<TopicLog>>>>>,
    /// The stats of each `Pipeline` stage (by index).
    pipelines: Arc<Mutex<HashMap<usize, PipelineStats>>>,
}

/// What a `Topic` stage's publisher and subscriptions saw.
#[derive(Debug, Default)]
struct TopicLog {
    /// The ids the publisher got from upstream, in order.
    upstream: Vec<u64>,
    /// The ids it published, in order (a prefix of `upstream`).
    published: Vec<u64>,
    /// The sum of what `publish` returned: subscriptions reached.
    reached: u64,
    /// Why the publisher stopped before upstream ended, if it did.
    stopped: Option<&'static str>,
    subs: Vec<SubLog>,
}

#[derive(Debug)]
struct SubLog {
    policy: SlowSubscriber,
    /// The ids it yielded, in order.
    delivered: Vec<u64>,
    /// Set when it ended: `missed()` and `end_reason()`.
    ended: Option<(u64, Option<EndReason>)>,
}

type Items = BoxStream<'static, Tracked>;

/// The pool operators in one place (their `try_` forms take a `TryStream`
/// of `Result<T, E>` and hand `f` the `Ok` value).
mod pool {
    use super::*;

    pub fn par_map<F, Fut>(s: Items, workers: Workers, ordered: bool, f: F) -> Items
    where
        F: Fn(Tracked) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Tracked> + Send + 'static,
    {
        if ordered {
            s.par_map(workers, f).boxed()
        } else {
            s.par_map_unordered(workers, f).boxed()
        }
    }

    pub fn par_map_keyed<F, Fut>(s: Items, workers: Workers, keys: u64, f: F) -> Items
    where
        F: Fn(Tracked) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Tracked> + Send + 'static,
    {
        s.par_map_keyed(workers, move |item: &Tracked| item.id % keys, f)
            .boxed()
    }

    /// A `try_` stage; what it yields, up to its first `Err`.
    pub fn try_par_map<F, Fut>(
        s: Items,
        workers: Workers,
        ordered: bool,
        f: F,
    ) -> BoxStream<'static, Result<Tracked, ChaosError>>
    where
        F: Fn(Tracked) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Tracked, ChaosError>> + Send + 'static,
    {
        let s = s.map(Ok::<Tracked, ChaosError>);
        if ordered {
            s.try_par_map(workers, f).boxed()
        } else {
            s.try_par_map_unordered(workers, f).boxed()
        }
    }
}

/// The user closure of a pool stage: hands the item on, sometimes after a
/// yield or a short sleep; panics on the planned item.
fn worker(
    env: &Env,
    panic_on: Option<u64>,
) -> impl Fn(Tracked) -> futures::future::BoxFuture<'static, Tracked> + Send + Sync + 'static {
    let env = env.clone();
    move |item: Tracked| {
        let env = env.clone();
        async move {
            pause(mix(env.seed, item.id)).await;
            if panic_on == Some(item.id) {
                env.panicked.store(true, Ordering::SeqCst);
                panic!("chaos panic at #{}", item.id);
            }
            item
        }
        .boxed()
    }
}

/// The user closure of a `try_` or pipeline stage: [`worker`], then the
/// injected error on the planned item (counted in `env.injected`).
fn fallible_worker(
    env: &Env,
    plan: &Plan,
    index: usize,
    panic_on: Option<u64>,
) -> impl Fn(Tracked) -> futures::future::BoxFuture<'static, Result<Tracked, ChaosError>>
+ Send
+ Sync
+ 'static {
    let fail_on = match plan.fault {
        Fault::Error { stage, id } if stage == index => Some(id),
        _ => None,
    };
    let work = worker(env, panic_on);
    let injected = env.injected.clone();
    move |item: Tracked| {
        let id = item.id;
        let handed = work(item);
        let injected = injected.clone();
        async move {
            let item = handed.await;
            if fail_on == Some(id) {
                injected.fetch_add(1, Ordering::SeqCst);
                Err(ChaosError::Injected(id))
            } else {
                Ok(item)
            }
        }
        .boxed()
    }
}

async fn pause(roll: u64) {
    match roll % 16 {
        0..=5 => {}
        6..=14 => tokio::task::yield_now().await,
        _ => tokio::time::sleep(Duration::from_micros(roll % 500)).await,
    }
}

fn source(plan: &Plan, env: &Env) -> Items {
    let (items, ledger) = (plan.items, env.ledger.clone());
    match plan.source {
        Source::Iter => futures::stream::iter(0..items)
            .map(move |id| ledger.make(id))
            .boxed(),
        Source::Generate => generate(move |y| async move {
            for id in 0..items {
                y.send(ledger.make(id)).await?;
            }
            Ok(())
        })
        .boxed(),
        Source::GenerateAhead(buffer) => generate_ahead(buffer, move |y| async move {
            for id in 0..items {
                y.send(ledger.make(id)).await?;
            }
            Ok(())
        })
        .boxed(),
        Source::FanIn(n) => fan_in((0..n as u64).map(|lane| {
            let ledger = ledger.clone();
            futures::stream::iter((lane..items).step_by(n))
                .map(move |id| ledger.make(id))
                .boxed()
        }))
        .boxed(),
    }
}

fn stage(s: Items, index: usize, stage: Stage, plan: &Plan, env: &Env) -> Items {
    let panic_on = match plan.fault {
        Fault::Panic { stage, id } if stage == index => Some(id),
        _ => None,
    };
    match stage {
        Stage::ParMap { workers, buffer } => pool::par_map(
            s,
            Workers::new(workers).buffer(buffer),
            true,
            worker(env, panic_on),
        ),
        Stage::ParMapUnordered { workers } => {
            pool::par_map(s, Workers::new(workers), false, worker(env, panic_on))
        }
        Stage::ParMapKeyed { workers, keys } => {
            pool::par_map_keyed(s, Workers::new(workers), keys, worker(env, panic_on))
        }
        Stage::TryParMap { workers, ordered } => {
            let call = fallible_worker(env, plan, index, panic_on);
            let results = pool::try_par_map(s, Workers::new(workers), ordered, call);
            until_err(results, env.errors.clone())
        }
        Stage::RateLimit => s.rate_limit(Rate::per_second(200_000).burst(64)).boxed(),
        Stage::Prefetch(buffer) => s.prefetch(buffer).boxed(),
        Stage::Split { split, n, spawn } => {
            let branches: Vec<Items> = match split {
                Split::FanOut => s.fan_out(n).into_iter().map(StreamExt::boxed).collect(),
                Split::Broadcast { capacity } => s
                    .broadcast(n, capacity)
                    .into_iter()
                    .map(StreamExt::boxed)
                    .collect(),
                Split::Partition { capacity } => s
                    .partition_with(Branches::new(n), capacity, |item: &Tracked| item.id % 7)
                    .into_iter()
                    .map(StreamExt::boxed)
                    .collect(),
            };
            let dropped_after = match plan.fault {
                Fault::DropBranch { stage, after } if stage == index => Some(after),
                _ => None,
            };
            let branches = branches.into_iter().enumerate().map(|(i, branch)| {
                let branch = match dropped_after {
                    // `take` ends after `after` items; `fan_in` then drops
                    // it, and the branch with it.
                    Some(after) if i == 0 => branch.take(after).boxed(),
                    _ => branch,
                };
                if spawn {
                    // Each branch read on a task of its own.
                    branch.prefetch(2).boxed()
                } else {
                    branch
                }
            });
            fan_in(branches).boxed()
        }
        Stage::Topic {
            capacity,
            replay,
            subscribers,
            policies,
        } => topic_stage(s, index, capacity, replay, &policies[..subscribers], env),
        Stage::Pipeline {
            workers,
            ordered,
            skip_errors,
            retry,
        } => {
            let call = fallible_worker(env, plan, index, panic_on);
            let mut first = PipelineStage::new("chaos").workers(workers);
            let mut second = PipelineStage::new("pass").workers(workers.div_ceil(2));
            if !ordered {
                first = first.unordered();
                second = second.unordered();
            }
            if skip_errors {
                first = first.skip_errors();
            }
            let pipeline = Pipeline::new(s);
            let pipeline = if retry {
                let retry = Retry::exponential(Duration::from_micros(20)).max_attempts(2);
                pipeline.stage(first.retry(retry), call)
            } else {
                pipeline.stage(first, call)
            };
            let pipeline =
                pipeline.stage(
                    second,
                    |item: Tracked| async move { Ok::<_, ChaosError>(item) },
                );
            env.pipelines
                .lock()
                .unwrap()
                .insert(index, pipeline.stats());
            until_err(pipeline.boxed(), env.errors.clone())
        }
    }
}

/// A `Topic` stage: a task publishes `s` into a topic (bound to the run's
/// context: it is built with it current) and closes it at the end; the
/// subscriptions, made before it starts, are merged with `fan_in`. The
/// publisher's panic (from upstream) is resumed once they have ended;
/// dropping the output aborts the publisher.
fn topic_stage(
    s: Items,
    index: usize,
    capacity: usize,
    replay: usize,
    policies: &[SlowSubscriber],
    env: &Env,
) -> Items {
    let topic: Topic<Tracked> = Topic::new(capacity).replay(replay);
    let log = Arc::new(Mutex::new(TopicLog::default()));
    env.topics.lock().unwrap().insert(index, log.clone());
    let subscriptions: Vec<Items> = policies
        .iter()
        .map(|&policy| {
            let mut sub = topic.subscribe_with(policy);
            let log = log.clone();
            let at = {
                let mut log = log.lock().unwrap();
                log.subs.push(SubLog {
                    policy,
                    delivered: Vec::new(),
                    ended: None,
                });
                log.subs.len() - 1
            };
            futures::stream::poll_fn(move |cx| {
                let polled = sub.poll_next_unpin(cx);
                let mut log = log.lock().unwrap();
                match &polled {
                    Poll::Ready(Some(item)) => log.subs[at].delivered.push(item.id),
                    Poll::Ready(None) => {
                        log.subs[at].ended = Some((sub.missed(), sub.end_reason()))
                    }
                    Poll::Pending => {}
                }
                polled
            })
            .boxed()
        })
        .collect();
    let publisher = tokio::spawn(async move {
        let mut s = s;
        while let Some(item) = s.next().await {
            let id = item.id;
            log.lock().unwrap().upstream.push(id);
            match topic.publish(item).await {
                Ok(reached) => {
                    let mut log = log.lock().unwrap();
                    log.published.push(id);
                    log.reached += reached as u64;
                }
                Err(_) => {
                    log.lock().unwrap().stopped = Some("the topic closed (its context ended)");
                    return;
                }
            }
            if topic.subscriber_count() == 0 {
                log.lock().unwrap().stopped = Some("no subscriber left");
                return;
            }
        }
        // The last handle is dropped here: the topic closes.
    });
    let publisher = AbortOnDrop(publisher);
    let end = futures::stream::once(async move {
        let mut publisher = publisher;
        if let Err(err) = (&mut publisher.0).await {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    })
    .filter_map(|()| futures::future::ready(None::<Tracked>));
    fan_in(subscriptions).chain(end).boxed()
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `Ok` items of a `try_` stage, ending at its first `Err` (recorded).
fn until_err(
    results: BoxStream<'static, Result<Tracked, ChaosError>>,
    errors: Arc<Mutex<Vec<String>>>,
) -> Items {
    results
        .scan((), move |(), result| {
            let next = match result {
                Ok(item) => Some(item),
                Err(err) => {
                    errors.lock().unwrap().push(err.to_string());
                    None
                }
            };
            futures::future::ready(next)
        })
        .boxed()
}

// ---------------------------------------------------------------------------
// One run.

struct Outcome {
    /// The ids the consumer got, in order.
    got: Vec<u64>,
    /// The panic the consumer saw, if any.
    panic: Option<String>,
}

async fn consume(plan: &Plan, env: &Env, ctx: &TaskContext, shutdown: &Shutdown) -> Outcome {
    let built = {
        let env = env.clone();
        let plan = plan.clone();
        let shutdown = shutdown.clone();
        // Built with `ctx` current: every operator binds to it.
        ctx.scope(async move {
            let left = env.left_source.clone();
            let mut s: Items = source(&plan, &env)
                .close_on(&shutdown)
                .inspect(move |item| left.lock().unwrap().push(item.id))
                .boxed();
            for (index, st) in plan.stages.iter().enumerate() {
                s = stage(s, index, *st, &plan, &env);
            }
            s
        })
        .await
    };
    let timer = match plan.fault {
        Fault::Cancel {
            after,
            by_timer: true,
        } => {
            let ctx = ctx.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(after as u64 * 20)).await;
                ctx.cancel();
            }))
        }
        _ => None,
    };
    let mut got = Vec::new();
    let mut rng = Rng(plan.seed ^ 0x5EED);
    let consumed = AssertUnwindSafe(async {
        let mut s = built;
        loop {
            match plan.fault {
                Fault::Cancel {
                    after,
                    by_timer: false,
                } if got.len() == after => ctx.cancel(),
                Fault::DropOutput { after } if got.len() == after => return,
                Fault::Shutdown { after } if got.len() == after => shutdown.trigger(),
                Fault::Stall if rng.one_in(8) => {
                    tokio::time::sleep(Duration::from_micros(rng.range(1, 800))).await;
                }
                _ => {}
            }
            match s.next().await {
                Some(item) => got.push(item.id),
                None => return,
            }
        }
    })
    .catch_unwind()
    .await;
    if let Some(timer) = timer {
        timer.await.expect("the cancel timer");
    }
    let panic = consumed.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic with another payload".into())
    });
    Outcome { got, panic }
}

/// Runs `plan` on a fresh multi-thread runtime and checks the outcome.
fn run(plan: &Plan) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env {
        seed: plan.seed,
        ledger: Arc::default(),
        panicked: Arc::default(),
        errors: Arc::default(),
        injected: Arc::default(),
        left_source: Arc::default(),
        topics: Arc::default(),
        pipelines: Arc::default(),
    };
    let result = runtime.block_on(async {
        let ctx = TaskContext::background();
        let shutdown = Shutdown::new();
        let outcome = tokio::time::timeout(RUN_BOUND, consume(plan, &env, &ctx, &shutdown))
            .await
            .map_err(|_| format!("hung: the run did not finish within {RUN_BOUND:?}"))?;
        settle(&env).await?;
        check(plan, &env, &outcome)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Waits for every spawned task to end and every item value to be dropped.
async fn settle(env: &Env) -> Result<(), String> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let start = Instant::now();
    loop {
        let tasks = metrics.num_alive_tasks();
        let live = env.ledger.live();
        if tasks == 0 && live.is_empty() {
            return Ok(());
        }
        if start.elapsed() > SETTLE_BOUND {
            let mut live = live;
            live.sort_unstable();
            live.truncate(20);
            return Err(format!(
                "not settled after {SETTLE_BOUND:?}: {tasks} task(s) alive, item values never dropped: {live:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn counts(ids: &[u64]) -> HashMap<u64, u64> {
    let mut counts = HashMap::new();
    for &id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

fn check(plan: &Plan, env: &Env, outcome: &Outcome) -> Result<(), String> {
    let m = plan.multiplicity();
    let got = &outcome.got;
    let twice = env.ledger.dropped_twice.load(Ordering::SeqCst);
    if twice > 0 {
        return Err(format!("{twice} item value(s) dropped twice"));
    }
    // Nothing emitted more often than it exists.
    for (id, n) in counts(got) {
        if id >= plan.items || n > m {
            return Err(format!(
                "item #{id} emitted {n} time(s), at most {m} expected"
            ));
        }
    }
    let cut_after = |index: usize| topic_cut_after(env, index);
    // Panics: ours reaches the consumer (unless a topic after it dropped
    // the stage before the consumer saw it); no other panic happens.
    let panicked = env.panicked.load(Ordering::SeqCst);
    let panic_cut = matches!(plan.fault, Fault::Panic { stage, .. } if cut_after(stage));
    match (&outcome.panic, panicked) {
        (Some(p), true) if p.contains("chaos panic") => {}
        (Some(p), true) => return Err(format!("the closure's panic surfaced as another: {p}")),
        (None, true) if panic_cut => {}
        (None, true) => return Err("a panic in a user closure was lost".into()),
        (Some(p), false) => return Err(format!("unexpected panic: {p}")),
        (None, false) => {}
    }
    // Whatever the fault, every topic and pipeline accounts for its items.
    for (&index, log) in env.topics.lock().unwrap().iter() {
        let cancelled = matches!(plan.fault, Fault::Cancel { .. });
        check_topic(index, &log.lock().unwrap(), cancelled)?;
    }
    for (&index, stats) in env.pipelines.lock().unwrap().iter() {
        check_pipeline(index, plan.stages[index], stats)?;
    }
    let errors = env.errors.lock().unwrap().clone();
    // A topic whose subscribers were all cut off stops reading its input:
    // what was upstream of it is then cut short.
    let all: Vec<u64> = (0..plan.items).collect();
    // The whole output, where the contract says what it is: walked stage by
    // stage from `base`, the ids that left the source.
    let exactly = |base: &[u64], skipped: Option<(usize, u64)>| -> Result<(), String> {
        let want = expected_counts(plan, env, base, skipped)?;
        let have = counts(got);
        if have != want {
            let mut short: Vec<u64> = want
                .iter()
                .filter(|&(id, n)| have.get(id).copied().unwrap_or(0) < *n)
                .map(|(id, _)| *id)
                .collect();
            short.sort_unstable();
            short.truncate(20);
            return Err(format!(
                "{} item(s) out, {} expected; short: {short:?}",
                got.len(),
                want.values().sum::<u64>()
            ));
        }
        if plan.keeps_order() && got.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("order lost: {got:?}"));
        }
        Ok(())
    };
    match plan.fault {
        Fault::None | Fault::Stall => {
            if !errors.is_empty() {
                return Err(format!("errors without a fault: {errors:?}"));
            }
            exactly(&all, None)?;
        }
        Fault::DropBranch { stage, .. } => {
            // A dropped fan-out branch takes nothing with it (while another
            // branch is left to take the rest); a dropped broadcast branch
            // or partition lane only loses its own share.
            if matches!(
                plan.stages[stage],
                Stage::Split {
                    split: Split::FanOut,
                    n: 2..,
                    ..
                }
            ) {
                exactly(&all, None)?;
            }
        }
        Fault::Error { stage, id } => {
            // The planned item reaches its stage unless a topic before it
            // may lose it, or a topic cut off its input.
            let fired = env.injected.load(Ordering::SeqCst) > 0;
            if id < plan.items && !cut_after(stage) && !plan.may_lose_before(stage) && !fired {
                return Err(format!("item #{id} never reached stage {stage} to fail"));
            }
            match plan.stages[stage] {
                Stage::Pipeline {
                    skip_errors: true, ..
                } => {
                    // Skipped: the run goes on, short of that item only.
                    if !errors.is_empty() {
                        return Err(format!("a skipped error ended the run: {errors:?}"));
                    }
                    exactly(&all, Some((stage, id)))?;
                }
                _ => {
                    let injected = ChaosError::Injected(id).to_string();
                    if fired && !cut_after(stage) && !errors.contains(&injected) {
                        return Err(format!("the injected error was lost: {errors:?}"));
                    }
                }
            }
        }
        Fault::Shutdown { .. } => {
            // Drain: every item that left the source comes out.
            let left = env.left_source.lock().unwrap().clone();
            exactly(&left, None).map_err(|why| format!("the drain lost items: {why}"))?;
        }
        Fault::Cancel { .. } | Fault::DropOutput { .. } | Fault::Panic { .. } => {}
    }
    Ok(())
}

/// What the output must be where nothing may be lost, item by item, walked
/// stage by stage from `base`: a broadcast multiplies each item; a topic
/// must have got all that came to it and passes on what its subscriptions
/// yielded (its own checks say that is right); a pipeline stage whose error
/// is skipped (`skipped`: stage and item) loses that item, and its stats
/// must say so.
fn expected_counts(
    plan: &Plan,
    env: &Env,
    base: &[u64],
    skipped: Option<(usize, u64)>,
) -> Result<HashMap<u64, u64>, String> {
    let cut_after = |index: usize| topic_cut_after(env, index);
    let mut want = counts(base);
    for (index, &stage) in plan.stages.iter().enumerate() {
        match stage {
            Stage::Split {
                split: Split::Broadcast { .. },
                n,
                ..
            } => want.values_mut().for_each(|count| *count *= n as u64),
            Stage::Topic { .. } => {
                let log = env.topics.lock().unwrap()[&index].clone();
                let log = log.lock().unwrap();
                let came = counts(&log.upstream);
                if log.stopped.is_none() && !cut_after(index) && came != want {
                    return Err(format!(
                        "topic stage {index} got {} item(s) from upstream, {} expected",
                        log.upstream.len(),
                        want.values().sum::<u64>()
                    ));
                }
                let delivered: Vec<u64> = log
                    .subs
                    .iter()
                    .flat_map(|sub| sub.delivered.iter().copied())
                    .collect();
                want = counts(&delivered);
            }
            Stage::Pipeline { .. } => {
                let came: u64 = want.values().sum();
                let lost = match skipped {
                    Some((at, id)) if at == index => want.remove(&id).unwrap_or(0),
                    _ => 0,
                };
                if !cut_after(index) {
                    let stats = env.pipelines.lock().unwrap()[&index].clone();
                    pipeline_went_through(index, &stats, came, lost)?;
                }
            }
            _ => {}
        }
    }
    want.retain(|_, count| *count > 0);
    Ok(want)
}

/// Whether a topic after stage `index` stopped reading its input because
/// every subscriber was cut off: it then dropped its input, and with it
/// whatever stages `index` and before still held, as if the output had been
/// dropped there.
fn topic_cut_after(env: &Env, index: usize) -> bool {
    env.topics
        .lock()
        .unwrap()
        .iter()
        .any(|(&at, log)| at > index && log.lock().unwrap().stopped.is_some())
}

/// A topic accounts for every item it got (see the module docs).
/// `cancelled`: its context was cancelled, so a subscription may have
/// dropped what it held (one already disconnected too, though it still
/// reports [`EndReason::Disconnected`]).
fn check_topic(index: usize, log: &TopicLog, cancelled: bool) -> Result<(), String> {
    let fail = |what: String| Err(format!("topic stage {index}: {what}"));
    if !log.upstream.starts_with(&log.published) {
        return fail("published something it never got, or out of order".into());
    }
    let published = log.published.len() as u64;
    // What `publish` should have counted, where every subscription ended
    // without dropping what it held.
    let mut received = (!cancelled).then_some(0);
    for (i, sub) in log.subs.iter().enumerate() {
        let policy = sub.policy;
        let delivered = sub.delivered.len() as u64;
        if !is_subsequence(&sub.delivered, &log.published) {
            return fail(format!(
                "{policy:?} subscription {i} yielded what was not published, or out of order: {:?} of {:?}",
                sub.delivered, log.published
            ));
        }
        let Some((missed, reason)) = &sub.ended else {
            // Dropped before its end (the output was dropped, or a panic):
            // what it held went with it.
            received = None;
            continue;
        };
        let missed = *missed;
        let prefix = log.published.starts_with(&sub.delivered);
        let ok = match (policy, reason) {
            (_, None) => false,
            // An abort drops what it held: a prefix where nothing is lost
            // on the way.
            (
                SlowSubscriber::Backpressure | SlowSubscriber::Disconnect,
                Some(EndReason::Cancelled(_)),
            ) => {
                received = None;
                prefix
            }
            (_, Some(EndReason::Cancelled(_))) => {
                received = None;
                true
            }
            (
                SlowSubscriber::Backpressure | SlowSubscriber::Disconnect,
                Some(EndReason::Closed),
            ) => delivered == published && missed == 0,
            (SlowSubscriber::DropOldest | SlowSubscriber::DropNewest, Some(EndReason::Closed)) => {
                delivered + missed == published
            }
            (SlowSubscriber::Disconnect, Some(EndReason::Disconnected)) => {
                prefix && missed == 1 && delivered < published
            }
            (_, Some(_)) => false,
        };
        if !ok {
            return fail(format!(
                "{policy:?} subscription {i} ended ({reason:?}) with {delivered} of {published} published yielded and missed() = {missed}"
            ));
        }
        if let Some(sum) = &mut received {
            // A DropOldest subscription received what it later lost too.
            *sum += match policy {
                SlowSubscriber::DropOldest => delivered + missed,
                _ => delivered,
            };
        }
    }
    match received {
        Some(sum) if sum != log.reached => fail(format!(
            "publish counted {} deliveries, the subscriptions received {sum}",
            log.reached
        )),
        _ => Ok(()),
    }
}

/// Whether `part` is `whole` with some items left out.
fn is_subsequence(part: &[u64], whole: &[u64]) -> bool {
    let mut whole = whole.iter();
    part.iter().all(|id| whole.any(|w| w == id))
}

/// A pipeline's stats account for every item of every stage, whatever the
/// fault: nothing in flight, nothing running, each item out, failed or
/// dropped.
fn check_pipeline(index: usize, stage: Stage, stats: &PipelineStats) -> Result<(), String> {
    let Stage::Pipeline { skip_errors, .. } = stage else {
        unreachable!("stats of a pipeline stage")
    };
    for s in stats.stages() {
        let ended = s.items_out + s.errors + s.dropped;
        let skips_ok = if skip_errors && s.name == "chaos" {
            s.skipped == s.errors
        } else {
            s.skipped == 0
        };
        if s.items_in != ended || s.in_flight != 0 || s.running != 0 || !skips_ok {
            return Err(format!(
                "pipeline stage {index}: stage {:?} does not account for its items: {s:?}",
                s.name
            ));
        }
        if s.name == "pass" && s.errors != 0 {
            return Err(format!(
                "pipeline stage {index}: the pass-through failed: {s:?}"
            ));
        }
    }
    Ok(())
}

/// A pipeline that nothing stopped: `came` items went in, each came out but
/// the `lost` ones that failed (and were skipped), and it completed.
fn pipeline_went_through(
    index: usize,
    stats: &PipelineStats,
    came: u64,
    lost: u64,
) -> Result<(), String> {
    let report = stats.report();
    let [chaos, pass] = &report.stages[..] else {
        unreachable!("two stages")
    };
    let want = (came, came - lost, lost, 0);
    let first = (chaos.items_in, chaos.items_out, chaos.errors, chaos.dropped);
    let second = (
        pass.items_in + lost,
        pass.items_out,
        pass.errors + lost,
        pass.dropped,
    );
    if first != want || second != want || !report.outcome.is_completed() {
        return Err(format!(
            "pipeline stage {index}: {came} item(s) in, {lost} to fail, but: {report:?}"
        ));
    }
    Ok(())
}

/// Runs of a plain `cargo test` (about 6 s in a debug build on two quiet cores, under a minute on busy ones).
const DEFAULT_RUNS: u64 = 600;
/// The first seed of a plain `cargo test`: fixed, so that run never meets a
/// plan for the first time (hunts set `CHAOS_SEED`).
const DEFAULT_SEED: u64 = 0xC4A0_5000_0000_0001;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

#[test]
fn chaos_random_compositions_keep_the_contract() {
    let runs = env_u64("CHAOS_RUNS").unwrap_or(DEFAULT_RUNS);
    let base = if std::env::var("CHAOS_SEED").as_deref() == Ok("clock") {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    } else {
        env_u64("CHAOS_SEED").unwrap_or(DEFAULT_SEED)
    };
    eprintln!("chaos: {runs} run(s) from seed {base}");
    // Our panics are expected: keep them out of the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let ours = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|p| p.contains("chaos panic"));
        if !ours {
            default_hook(info);
        }
    }));
    // A race may need many tries of one plan to show again.
    let repeat = env_u64("CHAOS_REPEAT").unwrap_or(1).max(1);
    for i in 0..runs * repeat {
        let seed = base.wrapping_add(i / repeat);
        let plan = Plan::draw(seed);
        let result = std::panic::catch_unwind(|| run(&plan))
            .unwrap_or_else(|_| Err("the harness itself panicked (see above)".into()));
        if let Err(why) = result {
            panic!(
                "chaos run failed: {why}\n  plan: {plan:?}\n  replay: CHAOS_SEED={seed} CHAOS_RUNS=1 cargo test --release --test chaos"
            );
        }
    }
}
