// A throwaway `redis-server` for tests, benches and doc examples: a free
// loopback port, persistence off, a temporary directory, killed on drop.
// Standard library only, so that tests and benches can use it as a module
// (`#[path]`) and doc examples can `include!` it into one; each user allows
// `dead_code` on that module (no inner attributes here, for `include!`).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn redis_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    if conn.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    let ok = conn.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n";
    let _ = conn.shutdown(Shutdown::Both);
    ok
}

impl RedisServer {
    /// Starts a server, or returns `None` after printing why the caller is
    /// skipped when there is no `redis-server` on `PATH`. Panics when the
    /// binary is there but will not start.
    pub fn start(caller: &str) -> Option<RedisServer> {
        let Some(binary) = redis_server_binary() else {
            eprintln!(
                "skipped {caller}: no `redis-server` on PATH (install the Debian package `redis-server`; .ci/run does)"
            );
            return None;
        };
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        for _attempt in 0..5 {
            let n = STARTED.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("tokio-conc-redis-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the server's temporary directory");
            let port = TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer {
                child: Some(child),
                port,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if answers_ping(port) {
                    return Some(server);
                }
                let exited = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .is_some();
                if exited {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            server.kill();
        }
        panic!("redis-server did not start in five attempts");
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `127.0.0.1:<port>`, as errors name the server.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server now (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
