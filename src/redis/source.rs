//! [`RedisSource`]: the builder of a consumer-group source, and `connect`,
//! which opens its two connections, creates the group, and starts the ack task.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client};

use super::deliveries::{Decoder, Deliveries};
use super::entry::Fields;
use super::error::Error;
use super::shared::{AckLink, Settings, Shared};
use crate::context::TaskContext;

/// A consumer-group source over a Redis stream: configure, then
/// [`connect`](Self::connect) to get the [`Deliveries`] stream.
///
/// Every consumer of a group gets its own share of the stream's entries
/// (Go's "many goroutines reading one channel", across processes). The
/// source reads in batches and only as the consumer asks: at most
/// [`prefetch`](Self::prefetch) entries are held unacknowledged by it at a
/// time. Acknowledgements are batched into one `XACK` for many ids. Entries
/// that a consumer left pending longer than [`claim_idle`](Self::claim_idle)
/// (it died, or its handler failed) are reclaimed with `XAUTOCLAIM` and
/// delivered here; one delivered [`max_deliveries`](Self::max_deliveries)
/// times without success goes to the [dead-letter
/// stream](Self::dead_letter) instead of looping forever.
///
/// **Delivery is at-least-once**: an entry whose handler finished but whose
/// acknowledgement had not reached Redis when its consumer died is delivered
/// again. Make handlers idempotent, or write their results and the
/// acknowledgement together with [`Ack::commit`](super::Ack::commit).
///
/// Without [`context`](Self::context), the source takes the context current
/// at `connect` ([`TaskContext::current`]), if any.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
/// # fn main() { doc_example(|_| async move {
/// # let client = doc_client();
/// use std::time::Duration;
/// use futures::StreamExt;
/// use tokio_conc::redis::RedisSource;
///
/// let mut jobs = RedisSource::new(&client, "doc-jobs", "workers", "worker-1")
///     .prefetch(64)
///     .claim_idle(Duration::from_secs(30))
///     .max_deliveries(5)
///     .decode(|fields| fields.parse::<u32>("job"))
///     .connect()
///     .await?;
/// let first = jobs.next().await.unwrap()?;
/// assert_eq!(*first.fields(), 1);
/// first.ack();
/// # Ok(()) }) }
/// ```
pub struct RedisSource<T = Fields> {
    client: Client,
    key: String,
    group: String,
    consumer: String,
    dead_letter: Option<String>,
    start_id: String,
    prefetch: usize,
    batch: Option<usize>,
    block: Duration,
    ack_interval: Duration,
    claim_idle: Duration,
    max_deliveries: u64,
    timeout: Duration,
    context: Option<TaskContext>,
    decoder: Decoder<T>,
}

impl RedisSource<Fields> {
    /// A source reading stream `key` as `consumer` of `group`, yielding raw
    /// [`Fields`] until [`decode`](Self::decode) says otherwise.
    ///
    /// Consumer names must be unique within the group and stable across
    /// restarts of the same worker (a restarted worker then finds its own
    /// pending entries); see the crate's `docs/distributed.md`.
    pub fn new(
        client: &Client,
        key: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        RedisSource {
            client: client.clone(),
            key: key.into(),
            group: group.into(),
            consumer: consumer.into(),
            dead_letter: None,
            start_id: "0".to_owned(),
            prefetch: 128,
            batch: None,
            block: Duration::from_secs(2),
            ack_interval: Duration::from_millis(10),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            timeout: Duration::from_secs(5),
            context: None,
            decoder: Arc::new(Ok),
        }
    }
}

impl<T> RedisSource<T> {
    /// Decodes each entry's fields with `decode`. An entry that does not
    /// decode cannot be handled by any consumer, so it goes straight to the
    /// dead-letter stream with the decoder's error.
    pub fn decode<U, E, F>(self, decode: F) -> RedisSource<U>
    where
        F: Fn(Fields) -> Result<U, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        RedisSource {
            client: self.client,
            key: self.key,
            group: self.group,
            consumer: self.consumer,
            dead_letter: self.dead_letter,
            start_id: self.start_id,
            prefetch: self.prefetch,
            batch: self.batch,
            block: self.block,
            ack_interval: self.ack_interval,
            claim_idle: self.claim_idle,
            max_deliveries: self.max_deliveries,
            timeout: self.timeout,
            context: self.context,
            decoder: Arc::new(move |fields| decode(fields).map_err(|e| e.to_string())),
        }
    }

    /// At most `n` entries held unacknowledged by this source at a time:
    /// buffered, handed out, or acknowledged but not yet confirmed by Redis
    /// (default 128). A delivery that failed or was dropped leaves the window
    /// at once and waits in the group's pending list for a reclaim.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn prefetch(mut self, n: usize) -> Self {
        assert!(n > 0, "`prefetch` must be at least 1, got 0");
        self.prefetch = n;
        self
    }

    /// At most `n` entries per read (`COUNT`), per reclaim, and per `XACK`
    /// (default: half of `prefetch`, at most 256; never more than `prefetch`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn batch(mut self, n: usize) -> Self {
        assert!(n > 0, "`batch` must be at least 1, got 0");
        self.batch = Some(n);
        self
    }

    /// How long one read waits on the server for new entries (`BLOCK`,
    /// default 2 s). Cancelling does not wait for it: the read is dropped.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// The longest an acknowledgement waits to be batched (default 10 ms).
    pub fn ack_interval(mut self, d: Duration) -> Self {
        self.ack_interval = d;
        self
    }

    /// How long an entry must have been pending, unacknowledged, before this
    /// source reclaims it from whichever consumer holds it (default 30 s).
    /// Set it above the longest a handler takes, or a slow handler's entry is
    /// delivered a second time while it still runs. It is also the wait
    /// before a failed entry is retried.
    pub fn claim_idle(mut self, d: Duration) -> Self {
        self.claim_idle = d;
        self
    }

    /// After `n` deliveries without success an entry goes to the dead-letter
    /// stream (default 5): a handler failing on its `n`th delivery sends it
    /// there with its error; a reclaim finding it delivered `n` times already
    /// (its consumers died) sends it there without one.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        assert!(n > 0, "`max_deliveries` must be at least 1, got 0");
        self.max_deliveries = n;
        self
    }

    /// The stream poison entries are moved to (default `"<key>:dead"`). Each
    /// dead letter has `dead_letter.stream`, `dead_letter.id`,
    /// `dead_letter.group`, `dead_letter.consumer`, `dead_letter.deliveries`
    /// and `dead_letter.error` fields, then the entry's own fields. The move
    /// runs as one script touching both keys: on a Redis Cluster, give them
    /// one hash tag (`{jobs}` and `{jobs}:dead`).
    pub fn dead_letter(mut self, key: impl Into<String>) -> Self {
        self.dead_letter = Some(key.into());
        self
    }

    /// Where a group created by `connect` starts: `"0"` (default: every entry
    /// already in the stream) or `"$"` (only entries added from now on). An
    /// existing group keeps its position.
    pub fn start_id(mut self, id: impl Into<String>) -> Self {
        self.start_id = id.into();
        self
    }

    /// How long to wait for a connection, or for the reply to a command
    /// (beyond `block` for a read), before giving up with an error (default
    /// 5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Binds the source to `ctx`: when it stops, reading stops at once and the
    /// stream yields [`Error::Stopped`] and ends. Entries read but not yet
    /// acknowledged stay pending in the group and are delivered again after
    /// `claim_idle` (at-least-once); acknowledgements already given are still
    /// flushed.
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The context set with [`context`](Self::context), if any.
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// Connects (within `timeout`), creates the group with `MKSTREAM` if it
    /// does not exist, and returns the stream of deliveries.
    ///
    /// Fails with [`Error::Connect`] when the server cannot be reached or does
    /// not answer in time, [`Error::WrongType`] when the key holds something
    /// other than a stream, and [`Error::Stopped`] when the context stops
    /// first. Needs a Tokio runtime (it spawns the ack task).
    pub async fn connect(self) -> Result<Deliveries<T>, Error> {
        let ctx = crate::internal::ambient_context(self.context.as_ref());
        let server = server_name(&self.client);
        let opening = self.open(&server);
        let (conn, reader) = match &ctx {
            Some(ctx) => ctx.run(opening).await??,
            None => opening.await?,
        };
        let batch = self
            .batch
            .unwrap_or((self.prefetch / 2).clamp(1, 256))
            .min(self.prefetch);
        let cfg = Settings {
            dead_letter: self
                .dead_letter
                .unwrap_or_else(|| format!("{}:dead", self.key)),
            server,
            key: self.key,
            group: self.group,
            consumer: self.consumer,
            prefetch: self.prefetch,
            batch,
            block: self.block,
            ack_interval: self.ack_interval,
            claim_idle: self.claim_idle,
            max_deliveries: self.max_deliveries,
        };
        let shared = Arc::new(Shared::new(cfg, conn));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        crate::internal::runtime_handle("RedisSource::connect")
            .spawn(super::ack::run(Arc::clone(&shared), rx));
        let link = Arc::new(AckLink { tx, shared });
        Ok(Deliveries::new(link, self.decoder, reader, ctx))
    }

    /// The command connection and the reader's own, and the group.
    async fn open(
        &self,
        server: &str,
    ) -> Result<(MultiplexedConnection, MultiplexedConnection), Error> {
        let mut conn = connect(&self.client, server, self.timeout, self.timeout).await?;
        let reader = connect(
            &self.client,
            server,
            self.timeout,
            self.block + self.timeout,
        )
        .await?;
        let created = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.start_id)
            .arg("MKSTREAM")
            .query_async::<()>(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") && !e.to_string().contains("BUSYGROUP") => {
                Err(Error::from_command(e, server, &self.key, "XGROUP CREATE"))
            }
            _ => Ok((conn, reader)),
        }
    }
}

impl<T> fmt::Debug for RedisSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSource")
            .field("server", &server_name(&self.client))
            .field("key", &self.key)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("prefetch", &self.prefetch)
            .field("batch", &self.batch)
            .field("claim_idle", &self.claim_idle)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

/// The server's address, as errors name it.
pub(crate) fn server_name(client: &Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// A new multiplexed connection, within `timeout` whatever the driver does.
pub(crate) async fn connect(
    client: &Client,
    server: &str,
    timeout: Duration,
    reply_timeout: Duration,
) -> Result<MultiplexedConnection, Error> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(reply_timeout));
    let attempt = client.get_multiplexed_async_connection_with_config(&config);
    let failed = |source| Error::Connect {
        server: server.to_owned(),
        source,
    };
    match tokio::time::timeout(timeout + Duration::from_millis(100), attempt).await {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(failed(::redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        )))),
    }
}
