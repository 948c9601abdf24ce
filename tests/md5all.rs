//! `examples/md5all.rs`, run as the program it is: its output over a
//! generated tree against digests computed here (and against `find | sort |
//! xargs md5sum` where those tools exist), its exit statuses, its memory and
//! its Ctrl-C.
//!
//! The example binary is built by running `cargo build --example md5all` from
//! the test (a no-op when it is up to date), with the cargo that runs the
//! tests, and located from cargo's JSON messages — so `cargo test --test
//! md5all` on a fresh clone tests the current source, not a stale binary.

#![cfg(unix)]

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

/// The example's executable, built once per test run.
fn md5all() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--example", "md5all", "--message-format=json"]);
        // The crate as this test was built (so the library is not built
        // twice): md5all needs none of its features.
        if !cfg!(feature = "rate") {
            cargo.arg("--no-default-features");
        }
        if cfg!(feature = "redis") {
            cargo.args(["--features", "redis"]);
        }
        if cfg!(feature = "tower") {
            cargo.args(["--features", "tower"]);
        }
        let out = cargo
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cargo build --example md5all failed");
        let messages = String::from_utf8(out.stdout).expect("cargo's JSON is UTF-8");
        let line = messages
            .lines()
            .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
            .filter(|l| l.contains(r#""name":"md5all""#))
            .find(|l| l.contains(r#""executable":""#))
            .expect("cargo reported the example's executable");
        let start = line.find(r#""executable":""#).unwrap() + r#""executable":""#.len();
        let end = start + line[start..].find('"').unwrap();
        PathBuf::from(line[start..end].replace(r"\\", r"\"))
    })
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "md5all-test-{}-{what}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Give back any permission a test took away, then remove everything.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.0)
            .status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The tree: nested folders, an empty file, symbolic links (to a file, to a
/// folder, dangling), a FIFO, a 100 MB sparse file, names with spaces,
/// newlines, carriage returns, backslashes and bytes that are not UTF-8.
fn build_tree(root: &Path) {
    let write = |rel: &[u8], content: &[u8]| {
        let path = root.join(os(rel));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    write(b"top.txt", b"hello\n");
    write(b"empty", b"");
    write(b"a/b/c/deep.txt", b"deep down\n");
    write(b"a/b/sibling", &[0_u8, 1, 2, 3, 255]);
    write(b"with space/file name.txt", b"spaces\n");
    write(b"odd/new\nline", b"newline in the name\n");
    write(b"odd/back\\slash", b"backslash in the name\n");
    write(b"odd/carriage\rreturn", b"carriage return\n");
    write(b"odd/latin1-\xe9t\xe9", b"not UTF-8\n");
    write(b"odd/\xff\xfe", b"two bad bytes\n");
    write(b"odd/-dash", b"leading dash\n");
    let pattern: Vec<u8> = (0..300_000_u32).map(|i| (i * 7 % 251) as u8).collect();
    write(b"a/medium.bin", &pattern); // several chunks, not a multiple of one
    // 100 MB, mostly holes, with data in the middle and at the end.
    let big = root.join("a/big.sparse");
    let mut file = fs::File::create(&big).unwrap();
    file.set_len(100_000_000).unwrap();
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(50_000_000)).unwrap();
    file.write_all(b"the middle").unwrap();
    file.seek(SeekFrom::Start(99_999_990)).unwrap();
    file.write_all(b"the end!!!").unwrap();
    drop(file);
    symlink("top.txt", root.join("link-to-file")).unwrap();
    symlink("a", root.join("link-to-dir")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    let fifo = Command::new("mkfifo").arg(root.join("a/fifo")).status();
    if !fifo.is_ok_and(|s| s.success()) {
        eprintln!("note: no mkfifo here; the tree has no FIFO");
    }
}

/// What `find DIR -type f` lists, found here without `find`: regular files,
/// never following symbolic links, as `DIR` joined with the relative path.
fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            regular_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// The expected output, computed independently of the example: each file
/// read whole, digested, escaped as GNU md5sum escapes, sorted by bytes.
fn expected_output(dir: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    regular_files(dir, &mut files);
    files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    let mut out = Vec::new();
    for file in files {
        let digest = Md5::digest(fs::read(&file).unwrap());
        let name = file.as_os_str().as_bytes();
        let special = name.iter().any(|&b| b == b'\n' || b == b'\r' || b == b'\\');
        if special {
            out.push(b'\\');
        }
        for byte in digest.iter() {
            write!(out, "{byte:02x}").unwrap();
        }
        out.extend_from_slice(b"  ");
        for &b in name {
            match (special, b) {
                (true, b'\n') => out.extend_from_slice(br"\n"),
                (true, b'\r') => out.extend_from_slice(br"\r"),
                (true, b'\\') => out.extend_from_slice(br"\\"),
                _ => out.push(b),
            }
        }
        out.push(b'\n');
    }
    out
}

/// `find DIR -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum`, when
/// this machine has GNU md5sum.
fn md5sum_output(dir: &Path) -> Option<Vec<u8>> {
    let version = Command::new("md5sum").arg("--version").output().ok()?;
    if !String::from_utf8_lossy(&version.stdout).contains("GNU coreutils") {
        return None;
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"find "$1" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum"#)
        .arg("sh")
        .arg(dir)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

fn run(args: &[&OsStr]) -> Output {
    Command::new(md5all())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("md5all runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn digests_a_generated_tree_like_find_sort_md5sum() {
    let scratch = Scratch::new("tree");
    let root = scratch.0.join("tree");
    build_tree(&root);
    let expected = expected_output(&root);
    assert_eq!(
        text(&expected).lines().count(),
        13,
        "the tree's regular files:\n{}",
        text(&expected)
    );
    let md5sum = md5sum_output(&root);
    match &md5sum {
        Some(theirs) => assert_eq!(
            text(theirs),
            text(&expected),
            "this test agrees with md5sum"
        ),
        None => eprintln!("note: no GNU md5sum here; compared with the test's own digests only"),
    }
    for workers in ["1", "3"] {
        let out = run(&[root.as_os_str(), os(b"--workers"), os(workers.as_bytes())]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), text(&expected), "--workers {workers}");
        assert_eq!(out.stdout, expected, "byte for byte, --workers {workers}");
        assert!(
            out.stderr.is_empty(),
            "nothing on a redirected stderr: {}",
            text(&out.stderr)
        );
    }
    // DIR spelled with a trailing slash, or reached through `..`: paths are
    // DIR joined with the relative path, as find prints them.
    let mut slashed = root.as_os_str().to_owned();
    slashed.push("/");
    let dotted = root.join("a/..");
    for dir in [PathBuf::from(slashed), dotted] {
        let out = run(&[dir.as_os_str()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            text(&expected_output(&dir)),
            "DIR = {dir:?}"
        );
        if let Some(theirs) = md5sum_output(&dir) {
            assert_eq!(out.stdout, theirs, "DIR = {dir:?}");
        }
    }
    // DIR as `.` from inside the tree.
    let out = Command::new(md5all())
        .arg(".")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let here = text(&out.stdout);
    assert!(here.lines().all(|l| l.contains("  ./")), "{here}");
    assert_eq!(here.lines().count(), 13);
    // A symbolic link as DIR is not followed (find lists nothing), unless a
    // trailing slash asks for the folder it points to.
    let link = root.join("link-to-dir");
    let out = run(&[link.as_os_str()]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stdout)
    );
    let mut link_slash = link.as_os_str().to_owned();
    link_slash.push("/");
    let out = run(&[&link_slash]);
    assert_eq!(
        text(&out.stdout),
        text(&expected_output(Path::new(&link_slash)))
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        4,
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn peak_memory_stays_under_64_mib_with_a_large_file() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: no /usr/bin/time to measure peak memory with");
        return;
    }
    let scratch = Scratch::new("memory");
    let big = scratch.0.join("big.sparse");
    fs::File::create(&big)
        .unwrap()
        .set_len(300_000_000)
        .unwrap();
    let report = scratch.0.join("time.txt");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(md5all())
        .arg(&scratch.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kib: u64 = fs::read_to_string(&report)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB for a 300 MB file");
}

#[test]
fn a_missing_dir_is_a_clear_error_with_status_2() {
    let scratch = Scratch::new("missing");
    let missing = scratch.0.join("no such dir");
    let out = run(&[missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("no such dir") && err.contains("No such file or directory"),
        "{err}"
    );
    // Bad arguments too.
    assert_eq!(run(&[]).status.code(), Some(2));
    let out = run(&[scratch.0.as_os_str(), os(b"--workers"), os(b"0")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Whether this process runs as root (for whom file permissions do not stop
/// reads).
fn is_root(scratch: &Path) -> bool {
    let probe = scratch.join(".uid-probe");
    fs::write(&probe, b"").unwrap();
    let uid = fs::metadata(&probe).unwrap().uid();
    fs::remove_file(&probe).unwrap();
    uid == 0
}

/// An unreadable file: as root (as CI runs), permissions stop nobody, so the
/// example runs as user `nobody` through util-linux's `setpriv`; without it
/// the test says why it is skipped.
#[test]
fn an_unreadable_file_is_named_and_exits_1() {
    let scratch = Scratch::new("unreadable");
    let root = scratch.0.join("tree");
    for i in 0..200 {
        let path = root.join(format!("d{}/f{i}", i % 7));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("file {i}\n")).unwrap();
    }
    let secret = root.join("d3/secret");
    fs::write(&secret, b"keep out\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let mut command = if is_root(&scratch.0) {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!(
                "skipped: running as root, where a mode of 000 does not stop reads, and there is no setpriv to drop to an unprivileged user"
            );
            return;
        }
        // `nobody` must reach the binary and the tree.
        let bin = scratch.0.join("md5all");
        fs::copy(md5all(), &bin).unwrap();
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o755)).unwrap();
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
        command
    } else {
        Command::new(md5all())
    };
    let out = command.arg(&root).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "no partial output: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&*secret.to_string_lossy()) && err.contains("Permission denied"),
        "{err}"
    );
}

/// Whether process `pid` catches SIGINT, from the `SigCgt` mask in
/// `/proc/PID/status`; `None` where there is no such file.
fn catches_sigint(pid: u32) -> Option<bool> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
    Some(mask & (1 << (2 - 1)) != 0) // SIGINT is signal 2
}

#[test]
fn ctrl_c_stops_it_promptly_with_status_130() {
    let scratch = Scratch::new("interrupt");
    // Eight 2 GB sparse files: a minute or more of digesting on one worker.
    for i in 0..8 {
        fs::File::create(scratch.0.join(format!("huge{i}")))
            .unwrap()
            .set_len(2_000_000_000)
            .unwrap();
    }
    let mut child = Command::new(md5all())
        .arg(&scratch.0)
        .args(["--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has installed its SIGINT handler (Linux says so in
    // /proc; elsewhere, give it a second).
    let started = Instant::now();
    while !catches_sigint(child.id()).unwrap_or(started.elapsed() > Duration::from_secs(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no SIGINT handler installed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100)); // into the digests
    assert!(child.try_wait().unwrap().is_none(), "still digesting");
    let sent = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("md5all hung after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = signalled.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stdout.is_empty(), "no partial output");
    // Generous for a loaded machine; it stops within a few 128 KiB chunks.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
