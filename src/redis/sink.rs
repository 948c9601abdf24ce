//! [`RedisSink`]: writes a stream's items to a Redis stream with pipelined
//! `XADD`s.
//!
//! Invariants: items are written in the order the input yields them; a batch
//! is whatever the input has ready (at most `batch` items), sent as one
//! pipeline, and the next batch waits for its reply, so at most one batch is
//! in flight and memory stays bounded by `batch`. `write_all` returns only
//! after the server confirmed every item it counts.

use std::fmt;
use std::time::Duration;

use ::redis::{Client, ToRedisArgs};
use futures::{FutureExt, Stream, StreamExt};

use super::error::Error;
use super::source::{connect, server_name};
use crate::context::TaskContext;

/// Writes items to a Redis stream: each item is an entry, given as
/// `(field, value)` pairs.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
/// # fn main() { doc_example(|_| async move {
/// # let client = doc_client();
/// use tokio_conc::redis::RedisSink;
///
/// let jobs = futures::stream::iter(1..=1000_u32).map(|n| [("job", n)]);
/// let written = RedisSink::new(&client, "doc-sink")
///     .batch(256)
///     .max_len_approx(10_000)
///     .write_all(jobs)
///     .await?;
/// assert_eq!(written, 1000);
/// # Ok(()) }) }
/// # use futures::StreamExt;
/// ```
#[derive(Clone)]
pub struct RedisSink {
    client: Client,
    key: String,
    batch: usize,
    max_len: Option<usize>,
    timeout: Duration,
    context: Option<TaskContext>,
}

impl RedisSink {
    /// A sink adding entries to stream `key` (created by the first `XADD`).
    pub fn new(client: &Client, key: impl Into<String>) -> Self {
        RedisSink {
            client: client.clone(),
            key: key.into(),
            batch: 256,
            max_len: None,
            timeout: Duration::from_secs(5),
            context: None,
        }
    }

    /// At most `n` `XADD`s per pipeline (default 256).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn batch(mut self, n: usize) -> Self {
        assert!(n > 0, "`batch` must be at least 1, got 0");
        self.batch = n;
        self
    }

    /// Trims the stream to about `n` entries as it writes (`MAXLEN ~ n`: Redis
    /// trims whole internal nodes, so a few more may stay; cheap).
    pub fn max_len_approx(mut self, n: usize) -> Self {
        self.max_len = Some(n);
        self
    }

    /// How long to wait for a connection or a reply (default 5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Binds the sink to `ctx`: when it stops, writing stops and
    /// [`write_all`](Self::write_all) returns [`Error::Stopped`]. Without it,
    /// the context current at `write_all` applies, if any.
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The context set with [`context`](Self::context), if any.
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// Connects and writes every item of `items`, returning how many were
    /// written once the server confirmed them all.
    ///
    /// Fails with [`Error::Connect`] when the server cannot be reached,
    /// [`Error::WrongType`] when the key is not a stream, [`Error::Refused`]
    /// (naming the key) when the server refuses an `XADD` — out of memory, a
    /// read-only replica, an item with no fields — and [`Error::Stopped`] when
    /// the context stops first. Items of a batch that failed may or may not
    /// have been written.
    pub async fn write_all<S, I, K, V>(&self, items: S) -> Result<u64, Error>
    where
        S: Stream<Item = I>,
        I: IntoIterator<Item = (K, V)>,
        K: ToRedisArgs,
        V: ToRedisArgs,
    {
        let ctx = crate::internal::ambient_context(self.context.as_ref());
        let writing = self.write(items);
        match ctx {
            Some(ctx) => ctx.run(writing).await.map_err(Error::Stopped)?,
            None => writing.await,
        }
    }

    async fn write<S, I, K, V>(&self, items: S) -> Result<u64, Error>
    where
        S: Stream<Item = I>,
        I: IntoIterator<Item = (K, V)>,
        K: ToRedisArgs,
        V: ToRedisArgs,
    {
        let server = server_name(&self.client);
        let mut conn = connect(&self.client, &server, self.timeout, self.timeout).await?;
        let mut items = std::pin::pin!(items);
        let mut written = 0_u64;
        let mut ended = false;
        while !ended {
            let Some(first) = items.next().await else {
                break;
            };
            let mut pipe = ::redis::pipe();
            self.add(&mut pipe, first);
            let mut n = 1;
            while n < self.batch {
                match items.next().now_or_never() {
                    Some(Some(item)) => {
                        self.add(&mut pipe, item);
                        n += 1;
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| Error::from_command(e, &server, &self.key, "XADD"))?;
            written += n as u64;
        }
        Ok(written)
    }

    fn add<I, K, V>(&self, pipe: &mut ::redis::Pipeline, item: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: ToRedisArgs,
        V: ToRedisArgs,
    {
        let cmd = pipe.cmd("XADD").arg(&self.key);
        if let Some(n) = self.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        for (k, v) in item {
            cmd.arg(k).arg(v);
        }
        cmd.ignore();
    }
}

impl fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSink")
            .field("server", &server_name(&self.client))
            .field("key", &self.key)
            .field("batch", &self.batch)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}
