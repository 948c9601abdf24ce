//! Go's `MD5All` ("Go Concurrency Patterns: Pipelines and cancellation"), as a
//! real tool: the MD5 digest of every regular file under a directory.
//!
//! ```text
//! cargo run --release --example md5all -- DIR [--workers N] [--stats]
//! ```
//!
//! It prints one line per regular file, `<32 hex digits>  <path>`, sorted by
//! the bytes of the path — byte for byte what
//! `find DIR -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum` prints,
//! names with a newline, a carriage return or a backslash escaped as
//! `md5sum` escapes them. Symbolic links and special files are skipped, as
//! `find -type f` skips them.
//!
//! The pipeline: one thread walks the tree and feeds the paths, in batches,
//! to a `Pipeline` stage of N workers (default: the number of cores) that
//! read each file in 128 KiB chunks into a reused buffer and digest it; the
//! consumer collects and sorts. Memory stays flat whatever the file sizes.
//!
//! * A file that cannot be read: an error naming it, the other workers are
//!   cancelled (the stage's stop policy), exit status 1.
//! * A missing DIR (or bad arguments): a clear error, exit status 2.
//! * Ctrl-C (or SIGTERM), through a `Shutdown`: the workers stop within a
//!   few chunks, exit status 130.
//! * On a terminal, a progress line on stderr (files, bytes, rate);
//!   `--stats` prints the pipeline's report on stderr at the end.

#![cfg_attr(not(unix), allow(unused))]

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio_conc::pipeline::PipelineStats;
use tokio_conc::prelude::*;

/// Bytes read per `read` call: large enough that the call's cost vanishes
/// next to hashing, small enough to stay in the CPU's cache.
const CHUNK: usize = 128 * 1024;

/// Paths handed from the walking thread to the pipeline per message.
const WALK_BATCH: usize = 128;

/// A worker digesting a large file yields after this many chunks (1 MiB).
const YIELD_EVERY: u32 = 8;

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("md5all: file names are printed byte for byte, which needs a Unix system");
    ExitCode::from(2)
}

#[cfg(unix)]
fn main() -> ExitCode {
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("md5all: {usage}");
            eprintln!("usage: md5all DIR [--workers N] [--stats]");
            return ExitCode::from(2);
        }
    };
    // `find DIR` reports a missing DIR; a DIR that is a symbolic link (with
    // no trailing slash) is not followed, so it lists nothing.
    let root = match std::fs::symlink_metadata(&args.dir) {
        Ok(meta) => meta,
        Err(e) => {
            eprintln!("md5all: {}: {}", args.dir.display(), plain(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = if root.file_type().is_symlink() {
        Ok(Vec::new())
    } else {
        runtime.block_on(md5_all(&args))
    };
    match result {
        Ok(digests) => match print_sums(&digests) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("md5all: writing the output: {e}");
                ExitCode::from(1)
            }
        },
        Err(Error::Interrupted(_)) => {
            eprintln!("md5all: interrupted");
            // The walking thread may be blocked in the file system: do not
            // wait for it.
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("md5all: {e}");
            std::process::exit(1);
        }
    }
}

/// The command line: `DIR [--workers N] [--stats]`.
struct Args {
    dir: PathBuf,
    workers: usize,
    stats: bool,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = std::ffi::OsString>) -> Result<Args, String> {
        let mut dir = None;
        let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut stats = false;
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--workers") => {
                    let n = args.next().ok_or("--workers needs a number")?;
                    workers = n
                        .to_str()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n: &usize| n > 0)
                        .ok_or_else(|| format!("--workers: {n:?} is not a positive number"))?;
                }
                Some("--stats") => stats = true,
                Some(flag) if flag.starts_with("--") => {
                    return Err(format!("unknown option {flag}"));
                }
                _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
                _ => return Err("one DIR only".into()),
            }
        }
        let dir = dir.ok_or("DIR is missing")?;
        Ok(Args {
            dir,
            workers,
            stats,
        })
    }
}

/// Why md5all stopped.
#[derive(Debug)]
enum Error {
    /// The walk could not read a directory (or an entry of it).
    Walk(walkdir::Error),
    /// A file could not be opened or read.
    Read(PathBuf, io::Error),
    /// Ctrl-C (the context was cancelled).
    Interrupted(ContextError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Walk(e) => match (e.path(), e.io_error()) {
                (Some(path), Some(io)) => write!(f, "{}: {}", path.display(), plain(io)),
                _ => write!(f, "{e}"),
            },
            Error::Read(path, e) => write!(f, "{}: {}", path.display(), plain(e)),
            Error::Interrupted(why) => write!(f, "interrupted ({why})"),
        }
    }
}

impl From<ContextError> for Error {
    fn from(why: ContextError) -> Self {
        Error::Interrupted(why)
    }
}

/// An I/O error as `md5sum` words it: "Permission denied", not "... (os error 13)".
fn plain(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Walks, digests on `args.workers` workers, and sorts: Go's `MD5All`.
///
/// The pipeline runs as a task of a [`Shutdown`] listening for Ctrl-C (and
/// SIGTERM) with no grace period: half a list of sums is worth nothing, so a
/// signal cancels the pipeline's context at once — every worker stops at its
/// next chunk — instead of draining.
#[cfg(unix)]
async fn md5_all(args: &Args) -> Result<Vec<(PathBuf, [u8; 16])>, Error> {
    let shutdown = Shutdown::new().on_signals();
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    let pipeline = Pipeline::new(walk(args.dir.clone()))
        .context(shutdown.context())
        .stage(
            Stage::new("digest").workers(args.workers).unordered(),
            move |entry: Result<PathBuf, walkdir::Error>| {
                let counted = counted.clone();
                async move {
                    let path = entry.map_err(Error::Walk)?;
                    match digest_file(&path, &counted).await {
                        Ok(sum) => Ok((path, sum)),
                        Err(e) => Err(Error::Read(path, e)),
                    }
                }
            },
        );
    let stats = pipeline.stats();
    let progress = io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(show_progress(stats.clone(), bytes)));
    let digesting = shutdown.spawn("md5all", pipeline.try_collect::<Vec<_>>());
    // Returns when the pipeline has ended, or at once after a signal.
    shutdown.wait(Duration::ZERO).await;
    let outcome = match digesting.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Interrupted(ContextError::Cancelled)), // aborted
    };
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[K");
    }
    if args.stats {
        eprint!("{}", stats.report());
    }
    let mut digests = outcome?;
    digests.sort_unstable_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    Ok(digests)
}

/// The regular files under `dir` (`find DIR -type f`), walked on a thread of
/// its own and handed over in batches, so the walk overlaps the digests.
fn walk(dir: PathBuf) -> impl Stream<Item = Result<PathBuf, walkdir::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Result<PathBuf, walkdir::Error>>>(32);
    std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(WALK_BATCH);
        for entry in walkdir::WalkDir::new(dir).follow_links(false) {
            match entry {
                Ok(entry) if entry.file_type().is_file() => batch.push(Ok(entry.into_path())),
                Ok(_) => continue, // directories, symbolic links, special files
                Err(e) => batch.push(Err(e)),
            }
            if batch.len() == WALK_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(WALK_BATCH));
                if tx.blocking_send(full).is_err() {
                    return; // the pipeline stopped
                }
            }
        }
        let _ = tx.blocking_send(batch);
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|batch| (futures::stream::iter(batch), rx))
    })
    .flatten()
}

thread_local! {
    /// One read buffer per worker thread, reused for every chunk of every file.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// The MD5 of the file at `path`, read in chunks (a file is never held in
/// memory whole). The blocking reads run right on the worker: the files are
/// expected in the page cache, where a read is a copy. Every
/// [`YIELD_EVERY`] chunks the worker yields, so a large file never holds its
/// thread for long: a cancelled pipeline drops the call there, and the other
/// tasks (the signal listener, the progress line) get their turn.
async fn digest_file(path: &Path, bytes: &AtomicU64) -> io::Result<[u8; 16]> {
    let mut file = File::open(path)?;
    let mut hasher = Md5::new();
    let mut chunks = 0_u32;
    loop {
        // The buffer is borrowed for one chunk only: the task may move to
        // another thread at the next yield.
        let n = BUFFER.with_borrow_mut(|buffer| {
            let n = read_some(&mut file, buffer)?;
            hasher.update(&buffer[..n]);
            io::Result::Ok(n)
        })?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        bytes.fetch_add(n as u64, Relaxed);
        chunks += 1;
        if chunks % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// One `read`, retried when a signal interrupts it.
fn read_some(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// `md5sum`'s lines: a name holding `\`, `\n` or `\r` is escaped, and its
/// line starts with `\`.
#[cfg(unix)]
fn print_sums(digests: &[(PathBuf, [u8; 16])]) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = Vec::with_capacity(256);
    for (path, sum) in digests {
        line.clear();
        format_line(&mut line, path.as_os_str().as_bytes(), sum);
        out.write_all(&line)?;
    }
    out.flush()
}

fn format_line(line: &mut Vec<u8>, name: &[u8], sum: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let escape = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    if escape {
        line.push(b'\\');
    }
    for byte in sum {
        line.push(HEX[usize::from(byte >> 4)]);
        line.push(HEX[usize::from(byte & 0xf)]);
    }
    line.extend_from_slice(b"  ");
    if escape {
        for &b in name {
            match b {
                b'\\' => line.extend_from_slice(b"\\\\"),
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
    } else {
        line.extend_from_slice(name);
    }
    line.push(b'\n');
}

/// A progress line on stderr, redrawn four times a second.
async fn show_progress(stats: PipelineStats, bytes: Arc<AtomicU64>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let files = stats.stage("digest").map_or(0, |s| s.items_out);
        let mib = bytes.load(Relaxed) as f64 / (1024.0 * 1024.0);
        let rate = mib / start.elapsed().as_secs_f64().max(1e-3);
        eprint!("\r\x1b[K{files} files, {mib:.0} MiB, {rate:.0} MiB/s");
    }
}
