//! Scaling across cores: every pool operator's speed-up over a sequential
//! loop as the runtime grows from 1 thread to many, in one run.
//!
//! At each thread count T the runtime has T worker threads and every pool
//! has T workers. The cases:
//!
//! * `sequential` — a plain loop on one thread: the reference (1.00×).
//! * `ideal` — T OS threads, each over an equal chunk (`std::thread::scope`):
//!   what the hardware allows with no hand-off at all.
//! * `par_map_unordered`, `par_map` (ordered) — tokio-conc's pool operators.
//! * `fan_out(T)` — each branch consumed on its own task.
//! * `round-robin mpsc pool` — the Go-style pool written by hand: a producer
//!   task deals items round-robin to one bounded mpsc per worker, and the
//!   workers send results to one mpsc the consumer reads.
//! * `buffer_unordered(T)` — futures' own: every call runs inside the one
//!   task that polls it, so never in parallel.
//!
//! on three kinds of item: ~20 µs and ~2 µs of hashing (a fixed hash loop,
//! calibrated once: unlike a spin on the clock, it does the same work however
//! often the thread is preempted, so thread counts above the core count are
//! measured honestly) and trivial items (`x * 2`), where the hand-off is all
//! there is and the table gives millions of items per second.
//!
//! Each figure is the best of `--runs` runs. Prints a markdown table and
//! writes an SVG plot (speed-up against threads for each operator, with the
//! ideal and the references; throughput for trivial items).
//!
//! ```text
//! cargo bench --bench scale -- --threads 1,2,4,8,16 [--runs 3] [--svg target/scale.svg] [--quick]
//! ```
//!
//! `SCALE_THREADS`, `SCALE_RUNS` and `SCALE_SVG` do the same as the flags.
//! Without `--threads`: powers of two up to the core count, and the core
//! count itself. `--quick` (also under `cargo test --benches`) runs tiny
//! inputs once, to check that every case works.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use plotters::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_conc::prelude::*;

/// Places in each channel of the hand-written pool, as in `benches/pool.rs`.
const CHANNEL_CAPACITY: usize = 100;

/// What one item costs.
#[derive(Clone, Copy)]
enum Load {
    /// About this many microseconds of hashing.
    Micros(u32),
    /// `x * 2`.
    Trivial,
}

/// One kind of item, and how many of them a run takes.
#[derive(Clone, Copy)]
struct Kind {
    load: Load,
    items: u64,
}

impl Kind {
    fn label(self) -> String {
        match self.load {
            Load::Micros(us) => format!("{us} µs items"),
            Load::Trivial => "trivial items".to_owned(),
        }
    }
}

/// The work done on one item.
#[derive(Clone, Copy)]
struct Work {
    rounds: u32,
}

impl Work {
    fn new(load: Load, rounds_per_us: f64) -> Work {
        let rounds = match load {
            Load::Micros(us) => (f64::from(us) * rounds_per_us).round().max(1.0) as u32,
            Load::Trivial => 0,
        };
        Work { rounds }
    }

    #[inline]
    fn apply(self, x: u64) -> u64 {
        if self.rounds == 0 {
            return x * 2;
        }
        let mut h = x | 1;
        for _ in 0..self.rounds {
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        // Kept small so that sums never overflow; depends on every round.
        black_box(h) >> 40
    }
}

/// Rounds of the hash loop per microsecond on this machine: the fastest of
/// a few probes, so that a probe slowed by other processes does not count.
fn rounds_per_us() -> f64 {
    let probe = Work { rounds: 4_000_000 };
    (0..5)
        .map(|seed| {
            let started = Instant::now();
            black_box(probe.apply(seed));
            f64::from(probe.rounds) / (started.elapsed().as_secs_f64() * 1e6)
        })
        .fold(0.0, f64::max)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Sequential,
    Ideal,
    ParMapUnordered,
    ParMap,
    FanOut,
    RoundRobin,
    BufferUnordered,
}

impl Case {
    const MEASURED: [Case; 7] = [
        Case::Sequential,
        Case::Ideal,
        Case::ParMapUnordered,
        Case::ParMap,
        Case::FanOut,
        Case::RoundRobin,
        Case::BufferUnordered,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::Sequential => "sequential",
            Case::Ideal => "ideal (T OS threads)",
            Case::ParMapUnordered => "par_map_unordered",
            Case::ParMap => "par_map",
            Case::FanOut => "fan_out(T)",
            Case::RoundRobin => "round-robin mpsc pool",
            Case::BufferUnordered => "buffer_unordered(T)",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Case::Sequential => RGBColor(150, 150, 150),
            Case::Ideal => BLACK,
            Case::ParMapUnordered => RGBColor(31, 119, 180),
            Case::ParMap => RGBColor(44, 160, 44),
            Case::FanOut => RGBColor(148, 103, 189),
            Case::RoundRobin => RGBColor(214, 39, 40),
            Case::BufferUnordered => RGBColor(255, 127, 14),
        }
    }

    /// Whether the case belongs in the table and plot of `kind`. On trivial
    /// items a loop or plain threads do no hand-off at all, so they are no
    /// yardstick there.
    fn shown_for(self, kind: Kind) -> bool {
        match kind.load {
            Load::Trivial => !matches!(self, Case::Sequential | Case::Ideal),
            Load::Micros(_) => true,
        }
    }
}

/// Runs `case` once over `kind`'s items at `threads`; returns the sum of the
/// outputs (checked against the sequential one) and the time taken.
fn run_once(case: Case, kind: Kind, work: Work, threads: usize, rt: &Runtime) -> (u64, Duration) {
    let items = kind.items;
    let started = Instant::now();
    let sum = match case {
        Case::Sequential => (0..items).map(|x| work.apply(black_box(x))).sum(),
        Case::Ideal => ideal(items, threads, work),
        _ => rt.block_on(async move {
            // On a spawned task, as in a service, not on the thread that
            // blocks on the runtime.
            tokio::spawn(pipeline(case, items, threads, work))
                .await
                .expect("the measured task panicked")
        }),
    };
    (sum, started.elapsed())
}

/// T OS threads over equal chunks of the items.
fn ideal(items: u64, threads: usize, work: Work) -> u64 {
    let threads = threads as u64;
    std::thread::scope(|scope| {
        let chunks: Vec<_> = (0..threads)
            .map(|t| {
                let range = items * t / threads..items * (t + 1) / threads;
                scope.spawn(move || range.map(|x| work.apply(black_box(x))).sum::<u64>())
            })
            .collect();
        chunks
            .into_iter()
            .map(|chunk| chunk.join().expect("a chunk panicked"))
            .sum()
    })
}

async fn pipeline(case: Case, items: u64, workers: usize, work: Work) -> u64 {
    let input = stream::iter(0..items);
    let call = move |x| async move { work.apply(x) };
    match case {
        Case::ParMapUnordered => sum(input.par_map_unordered(workers, call)).await,
        Case::ParMap => sum(input.par_map(workers, call)).await,
        Case::BufferUnordered => sum(input.map(call).buffer_unordered(workers)).await,
        Case::FanOut => {
            let branches = input
                .fan_out(workers)
                .into_iter()
                .map(|branch| tokio::spawn(sum(branch.map(move |x| work.apply(x)))));
            let mut total = 0;
            for branch in branches.collect::<Vec<_>>() {
                total += branch.await.expect("a branch panicked");
            }
            total
        }
        Case::RoundRobin => round_robin_pool(items, workers, work).await,
        Case::Sequential | Case::Ideal => unreachable!("not a pipeline"),
    }
}

async fn sum(s: impl futures::Stream<Item = u64>) -> u64 {
    s.fold(0, |total, x| async move { total + x }).await
}

/// The Go-style pool by hand: the producer deals items round-robin to one
/// bounded channel per worker; results come back on one channel.
async fn round_robin_pool(items: u64, workers: usize, work: Work) -> u64 {
    let (results_tx, mut results_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let lanes: Vec<_> = (0..workers)
        .map(|_| {
            let (lane, mut jobs) = mpsc::channel::<u64>(CHANNEL_CAPACITY);
            let results = results_tx.clone();
            tokio::spawn(async move {
                while let Some(x) = jobs.recv().await {
                    results.send(work.apply(x)).await.expect("consumer alive");
                }
            });
            lane
        })
        .collect();
    drop(results_tx);
    tokio::spawn(async move {
        for (x, lane) in (0..items).zip(lanes.iter().cycle()) {
            lane.send(x).await.expect("worker alive");
        }
    });
    let mut total = 0;
    while let Some(y) = results_rx.recv().await {
        total += y;
    }
    total
}

/// Best time of each case, per kind and thread count.
struct Results {
    threads: Vec<usize>,
    kinds: Vec<Kind>,
    /// `best[k][t][c]`: kind `k`, `threads[t]`, `Case::MEASURED[c]`.
    best: Vec<Vec<Vec<Duration>>>,
}

impl Results {
    fn best(&self, k: usize, t: usize, case: Case) -> Duration {
        let c = Case::MEASURED
            .iter()
            .position(|&m| m == case)
            .expect("measured");
        self.best[k][t][c]
    }

    /// The sequential loop's best over every round: it does not depend on T.
    fn sequential(&self, k: usize) -> Duration {
        (0..self.threads.len())
            .map(|t| self.best(k, t, Case::Sequential))
            .min()
            .expect("at least one thread count")
    }

    /// Speed-up over the sequential loop, or millions of items per second
    /// on trivial items.
    fn figure(&self, k: usize, t: usize, case: Case) -> f64 {
        let time = self.best(k, t, case).as_secs_f64().max(1e-9);
        match self.kinds[k].load {
            Load::Trivial => self.kinds[k].items as f64 / time / 1e6,
            Load::Micros(_) => self.sequential(k).as_secs_f64() / time,
        }
    }
}

struct Config {
    threads: Vec<usize>,
    runs: usize,
    svg: PathBuf,
    quick: bool,
}

fn config() -> Config {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut threads = std::env::var("SCALE_THREADS")
        .ok()
        .map(|list| parse_threads(&list));
    let mut runs = std::env::var("SCALE_RUNS")
        .ok()
        .map(|n| n.parse().expect("SCALE_RUNS: a number"));
    let mut svg = std::env::var_os("SCALE_SVG").map(PathBuf::from);
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--threads" => threads = Some(parse_threads(&value("--threads"))),
            "--runs" => runs = Some(value("--runs").parse().expect("--runs: a number")),
            "--svg" => svg = Some(PathBuf::from(value("--svg"))),
            // `cargo test --benches` runs every bench target with `--test`.
            "--quick" | "--test" => quick = true,
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => eprintln!("scale: ignoring unknown argument {other:?}"),
        }
    }
    let threads = threads.unwrap_or_else(|| {
        let mut default: Vec<usize> = (0..).map(|p| 1 << p).take_while(|&t| t <= cores).collect();
        if default.last() != Some(&cores) {
            default.push(cores);
        }
        default
    });
    Config {
        threads,
        runs: if quick { 1 } else { runs.unwrap_or(3).max(1) },
        svg: svg.unwrap_or_else(|| PathBuf::from("target/scale.svg")),
        quick,
    }
}

fn parse_threads(list: &str) -> Vec<usize> {
    let threads: Vec<usize> = list
        .split(',')
        .map(|t| match t.trim().parse() {
            Ok(t) if t > 0 => t,
            _ => panic!("thread counts are positive numbers separated by commas, got {list:?}"),
        })
        .collect();
    assert!(!threads.is_empty(), "no thread count in {list:?}");
    threads
}

fn main() {
    let config = config();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let rounds_per_us = rounds_per_us();
    let scale = if config.quick { 100 } else { 1 };
    let kinds = vec![
        Kind {
            load: Load::Micros(20),
            items: 8_000 / scale,
        },
        Kind {
            load: Load::Micros(2),
            items: 80_000 / scale,
        },
        Kind {
            load: Load::Trivial,
            items: 1_000_000 / scale,
        },
    ];
    eprintln!(
        "scale: {cores} cores ({}), threads {:?}, best of {} runs, {rounds_per_us:.0} hash rounds/µs",
        cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        config.threads,
        config.runs
    );
    let started = Instant::now();
    let works: Vec<(Work, u64)> = kinds
        .iter()
        .map(|kind| {
            let work = Work::new(kind.load, rounds_per_us);
            (work, (0..kind.items).map(|x| work.apply(x)).sum())
        })
        .collect();
    let mut best =
        vec![vec![vec![Duration::MAX; Case::MEASURED.len()]; config.threads.len()]; kinds.len()];
    for (t, &threads) in config.threads.iter().enumerate() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("runtime");
        for (k, (&kind, &(work, expected))) in kinds.iter().zip(&works).enumerate() {
            for _ in 0..config.runs {
                for (c, &case) in Case::MEASURED.iter().enumerate() {
                    if !case.shown_for(kind) {
                        continue;
                    }
                    let (sum, time) = run_once(case, kind, work, threads, &rt);
                    assert_eq!(sum, expected, "{} lost or changed items", case.label());
                    best[k][t][c] = best[k][t][c].min(time);
                }
            }
        }
        eprintln!("scale: T={threads} done after {:.0?}", started.elapsed());
    }
    let results = Results {
        threads: config.threads.clone(),
        kinds,
        best,
    };
    print_table(&results, cores);
    if let Err(err) = plot(&results, cores, &config.svg) {
        eprintln!("scale: could not write {}: {err}", config.svg.display());
    } else {
        eprintln!("scale: plot written to {}", config.svg.display());
    }
}

/// The processor's name, where the system says it.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

fn print_table(results: &Results, cores: usize) {
    print!("| case |");
    for threads in &results.threads {
        print!(" T={threads} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(results.threads.len()));
    for (k, &kind) in results.kinds.iter().enumerate() {
        let unit = match kind.load {
            Load::Trivial => ", M items/s",
            Load::Micros(_) => "",
        };
        for case in Case::MEASURED
            .into_iter()
            .filter(|case| case.shown_for(kind))
        {
            print!("| {}{unit}: {} |", kind.label(), case.label());
            for t in 0..results.threads.len() {
                print!(" {:.2} |", results.figure(k, t, case));
            }
            println!();
        }
    }
    println!();
    let references: Vec<String> = results
        .kinds
        .iter()
        .enumerate()
        .filter(|(_, kind)| matches!(kind.load, Load::Micros(_)))
        .map(|(k, kind)| {
            format!(
                "{}: {:.1} ms for {} items",
                kind.label(),
                results.sequential(k).as_secs_f64() * 1e3,
                kind.items
            )
        })
        .collect();
    println!(
        "Speed-ups over the sequential loop ({}); trivial items ({}) in millions per second. \
         Workers = runtime threads = T; {cores} cores, so T above {cores} oversubscribes them.",
        references.join(", "),
        results.kinds.last().map_or(0, |kind| kind.items)
    );
}

/// One chart per kind of item, side by side.
fn plot(results: &Results, cores: usize, path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let width = 520 * results.kinds.len() as u32;
    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "Speed-up against runtime threads T (workers = T), {cores} cores{}",
            cpu_model().map_or(String::new(), |model| format!(": {model}"))
        ),
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((1, results.kinds.len()));
    let max_threads = results.threads.iter().copied().max().unwrap_or(1);
    for (k, (panel, &kind)) in panels.iter().zip(&results.kinds).enumerate() {
        let cases: Vec<Case> = Case::MEASURED
            .into_iter()
            .filter(|case| case.shown_for(kind))
            .collect();
        let top = cases
            .iter()
            .flat_map(|&case| (0..results.threads.len()).map(move |t| results.figure(k, t, case)))
            .filter(|figure| figure.is_finite())
            .fold(1.0_f64, f64::max)
            * 1.1;
        let (caption, y_desc) = match kind.load {
            Load::Trivial => (format!("{} (x * 2): throughput", kind.label()), "M items/s"),
            Load::Micros(_) => (
                format!("{}: speed-up over a loop", kind.label()),
                "speed-up",
            ),
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..(max_threads as f64 + 0.5), 0.0..top)?;
        chart
            .configure_mesh()
            .x_labels(max_threads.min(16) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("threads (T)")
            .y_desc(y_desc)
            .draw()?;
        if cores < max_threads {
            // Beyond this line the threads outnumber the cores.
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    [(cores as f64, 0.0), (cores as f64, top)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))?
                .label(format!("{cores} cores"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
        }
        for case in cases {
            let points: Vec<(f64, f64)> = results
                .threads
                .iter()
                .enumerate()
                .map(|(t, &threads)| (threads as f64, results.figure(k, t, case)))
                .filter(|(_, figure)| figure.is_finite())
                .collect();
            let color = case.color();
            let width = if case == Case::Ideal { 3 } else { 2 };
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(width)).point_size(3))?
                .label(case.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
