//! [`Deliveries`]: the stream a connected [`RedisSource`](super::RedisSource)
//! becomes.
//!
//! Invariants:
//! - No task of its own: reads and reclaims are futures this stream polls, so
//!   nothing is read unless the consumer asks, and dropping the stream (or
//!   its context stopping) ends reading at once. Only the ack task outlives
//!   it, for the deliveries still out (see `ack.rs`).
//! - At most one read (`XREADGROUP ... BLOCK` on the dedicated connection)
//!   and one reclaim (`XAUTOCLAIM` on the shared one) are in flight; each
//!   reserves its `COUNT` of window slots before it is sent (see `shared.rs`).
//! - A read is started when the buffer runs low, so the next batch is on its
//!   way while the consumer works through this one; a reclaim when its timer
//!   fires (every `claim_idle / 2`, at most 10 s apart) and at once while the
//!   `XAUTOCLAIM` cursor says there is more.
//! - An error or a stop is yielded once, then the stream ends; entries read
//!   but not handed out are given back (see `ack.rs`).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisResult, Value};
use futures::Stream;
use futures::future::BoxFuture;
use futures::stream::FusedStream;
use tokio::time::{Instant, Sleep};

use super::delivery::{Ack, Delivery};
use super::entry::{self, Fields, RawEntry};
use super::error::Error;
use super::shared::{AckLink, AckMsg, Shared};
use crate::context::{CancelledOwned, ContextError, TaskContext};

/// Turns raw fields into the caller's type, or says why not.
pub(crate) type Decoder<T> = Arc<dyn Fn(Fields) -> Result<T, String> + Send + Sync>;

type ReadFuture = BoxFuture<'static, (MultiplexedConnection, RedisResult<Value>)>;
type ClaimFuture = BoxFuture<'static, Result<(String, Vec<RawEntry>), Error>>;

/// The stream of a connected [`RedisSource`](super::RedisSource): each item is
/// a [`Delivery`] to handle and settle, or the [`Error`] that ended the stream
/// (the server went away, a command was refused, or the attached context
/// stopped it: [`Error::Stopped`]). After an error the stream ends.
///
/// The stream never ends on its own otherwise: a queue may always get more.
/// End it by dropping it, by cancelling its context, or by closing it (for
/// instance `take_until`): reading stops, deliveries already handed out can
/// still be settled, and their acknowledgements are flushed after the last of
/// them is gone.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
/// # fn main() { doc_example(|mut source| async move {
/// use futures::StreamExt;
/// use tokio_conc::prelude::*;
///
/// // Double every job on 8 workers, acknowledging each after its handler
/// // succeeded; stop after 3.
/// let doubled: Vec<u32> = source
///     .par_map_unordered(8, |delivery| async move {
///         let delivery = delivery?;
///         delivery
///             .ack_after(|fields| async move { fields.parse::<u32>("job").map(|n| n * 2) })
///             .await
///             .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
///     })
///     .take(3)
///     .map(|r| r.unwrap())
///     .collect()
///     .await;
/// assert_eq!(doubled.len(), 3);
/// # Ok(()) }) }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Deliveries<T> {
    link: Arc<AckLink>,
    decoder: Decoder<T>,
    reader: Option<MultiplexedConnection>,
    read: Option<(ReadFuture, usize)>,
    claim: Option<(ClaimFuture, usize)>,
    claim_timer: Pin<Box<Sleep>>,
    claim_due: bool,
    cursor: String,
    buffer: VecDeque<RawEntry>,
    stop: Option<(TaskContext, Pin<Box<CancelledOwned>>)>,
    starved: bool,
    done: bool,
}

impl<T> Deliveries<T> {
    pub(crate) fn new(
        link: Arc<AckLink>,
        decoder: Decoder<T>,
        reader: MultiplexedConnection,
        ctx: Option<TaskContext>,
    ) -> Self {
        Deliveries {
            link,
            decoder,
            reader: Some(reader),
            read: None,
            claim: None,
            claim_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            claim_due: false,
            cursor: "0-0".to_owned(),
            buffer: VecDeque::new(),
            stop: ctx.map(|ctx| {
                let wait = Box::pin(ctx.cancelled_owned());
                (ctx, wait)
            }),
            starved: false,
            done: false,
        }
    }

    fn shared(&self) -> &Shared {
        &self.link.shared
    }

    fn claim_every(&self) -> Duration {
        (self.shared().cfg.claim_idle / 2).clamp(Duration::from_millis(5), Duration::from_secs(10))
    }

    /// Starts a read or a reclaim where one is due and there is room.
    /// Returns whether it started one (which the caller then polls).
    fn start_work(&mut self) -> bool {
        let room = self.shared().room();
        if room == 0 {
            return false;
        }
        self.starved = false;
        let cfg = &self.link.shared.cfg;
        if self.claim_due && self.claim.is_none() {
            self.claim_due = false;
            let count = room.min(cfg.batch);
            self.link.shared.reserve(count);
            let fut = reclaim(Arc::clone(&self.link.shared), self.cursor.clone(), count);
            self.claim = Some((Box::pin(fut), count));
            return true;
        }
        let low = (cfg.batch / 2).max(1);
        if self.buffer.len() < low
            && let Some(mut conn) = self.reader.take()
        {
            let count = room.min(cfg.batch);
            let mut cmd = ::redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&cfg.group)
                .arg(&cfg.consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(cfg.block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(&cfg.key)
                .arg(">");
            self.link.shared.reserve(count);
            let fut = async move {
                let reply = cmd.query_async::<Value>(&mut conn).await;
                (conn, reply)
            };
            self.read = Some((Box::pin(fut), count));
            return true;
        }
        false
    }

    /// Entries of a read arrived: `reserved` slots were taken for them.
    fn absorb_read(&mut self, entries: Vec<RawEntry>, reserved: usize) {
        self.shared()
            .unreserve(reserved.saturating_sub(entries.len()));
        let fresh = self.shared().adopt(entries.iter().map(|e| e.id));
        for (entry, fresh) in entries.into_iter().zip(fresh) {
            if !fresh {
                self.shared().unreserve(1);
            } else if entry.fields.is_none() {
                self.link.send(AckMsg::Ack(entry.id));
            } else {
                self.buffer.push_back(entry);
            }
        }
    }

    /// Entries of a reclaim arrived; those delivered too often go to the
    /// dead-letter stream instead of the consumer.
    fn absorb_claimed(&mut self, cursor: String, entries: Vec<RawEntry>, reserved: usize) {
        if cursor == "0-0" {
            let next = Instant::now() + self.claim_every();
            self.claim_timer.as_mut().reset(next);
        } else {
            self.claim_due = true;
        }
        self.cursor = cursor;
        let max = self.shared().cfg.max_deliveries;
        let (exhausted, rest): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|e| e.deliveries > max && e.fields.is_some());
        for entry in &exhausted {
            if self.shared().adopt(std::iter::once(entry.id))[0] {
                let before = entry.deliveries - 1;
                self.link.send(AckMsg::DeadLetter {
                    id: entry.id,
                    deliveries: before,
                    error: format!(
                        "not acknowledged after {before} deliveries (its consumers stopped or dropped it without an error)"
                    ),
                });
            } else {
                self.shared().unreserve(1);
            }
        }
        self.absorb_read(rest, reserved.saturating_sub(exhausted.len()));
    }

    /// Hands out one buffered entry, or sends it to the dead-letter stream if
    /// it does not decode.
    fn hand_out(&mut self, raw: RawEntry) -> Option<Delivery<T>> {
        let fields = raw.fields.unwrap_or_default();
        match (self.decoder)(fields) {
            Ok(value) => Some(Delivery::new(
                value,
                Ack::new(raw.id, raw.deliveries, Arc::clone(&self.link)),
            )),
            Err(why) => {
                self.link.send(AckMsg::DeadLetter {
                    id: raw.id,
                    deliveries: raw.deliveries,
                    error: format!("cannot decode: {why}"),
                });
                None
            }
        }
    }

    fn give_back(&mut self) {
        if !self.buffer.is_empty() {
            let entries = self
                .buffer
                .drain(..)
                .map(|e| (e.id, e.deliveries))
                .collect();
            self.link.send(AckMsg::GiveBack(entries));
        }
    }

    fn finish(&mut self, err: Error) -> Poll<Option<Result<Delivery<T>, Error>>> {
        self.done = true;
        self.read = None;
        self.claim = None;
        self.reader = None;
        self.give_back();
        Poll::Ready(Some(Err(err)))
    }
}

impl<T> Stream for Deliveries<T> {
    type Item = Result<Delivery<T>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some((ctx, wait)) = &mut this.stop
            && wait.as_mut().poll(cx).is_ready()
        {
            let why = ctx.err().unwrap_or(ContextError::Cancelled);
            return this.finish(Error::Stopped(why));
        }
        loop {
            if let Some(err) = this.shared().take_failure() {
                return this.finish(err);
            }
            if let Some((fut, reserved)) = &mut this.claim
                && let Poll::Ready(result) = fut.as_mut().poll(cx)
            {
                let reserved = *reserved;
                this.claim = None;
                match result {
                    Ok((cursor, entries)) => this.absorb_claimed(cursor, entries, reserved),
                    Err(err) => return this.finish(err),
                }
            }
            if let Some((fut, reserved)) = &mut this.read
                && let Poll::Ready((conn, reply)) = fut.as_mut().poll(cx)
            {
                let reserved = *reserved;
                this.read = None;
                this.reader = Some(conn);
                let cfg = &this.link.shared.cfg;
                match reply.and_then(entry::parse_read) {
                    Ok(entries) => this.absorb_read(entries, reserved),
                    Err(e) => {
                        let err = Error::from_command(e, &cfg.server, &cfg.key, "XREADGROUP");
                        return this.finish(err);
                    }
                }
            }
            if !this.claim_due && this.claim_timer.as_mut().poll(cx).is_ready() {
                this.claim_due = true;
                let far = Instant::now() + Duration::from_secs(86_400);
                this.claim_timer.as_mut().reset(far);
            }
            if this.start_work() {
                continue;
            }
            if let Some(raw) = this.buffer.pop_front() {
                match this.hand_out(raw) {
                    Some(delivery) => return Poll::Ready(Some(Ok(delivery))),
                    None => continue,
                }
            }
            // Nothing to hand out: wait for a reply, the claim timer, the
            // context, or room in the window (the ack task wakes us; when we
            // wait for room, ask it to flush now rather than at its interval).
            this.shared().wait_for_room(cx.waker());
            if let Some(err) = this.shared().take_failure() {
                return this.finish(err);
            }
            if this.start_work() {
                continue;
            }
            if this.shared().room() == 0 && !this.starved {
                this.starved = true;
                this.link.send(AckMsg::FlushNow);
            }
            return Poll::Pending;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done { (0, Some(0)) } else { (0, None) }
    }
}

impl<T> FusedStream for Deliveries<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for Deliveries<T> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<T> fmt::Debug for Deliveries<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cfg = &self.shared().cfg;
        f.debug_struct("Deliveries")
            .field("server", &cfg.server)
            .field("key", &cfg.key)
            .field("group", &cfg.group)
            .field("consumer", &cfg.consumer)
            .field("buffered", &self.buffer.len())
            .field("room", &self.shared().room())
            .field("done", &self.done)
            .finish()
    }
}

/// `XAUTOCLAIM` entries idle longer than `claim_idle`, then their delivery
/// counts (which `XAUTOCLAIM` does not report) from one pipeline of
/// `XPENDING key group id id 1`. An entry no longer pending by then (another
/// consumer acknowledged it) comes back with no fields, to be released.
async fn reclaim(
    shared: Arc<Shared>,
    cursor: String,
    count: usize,
) -> Result<(String, Vec<RawEntry>), Error> {
    let cfg = &shared.cfg;
    let mut conn = shared.conn.clone();
    let fail = |e, command| Error::from_command(e, &cfg.server, &cfg.key, command);
    let reply = ::redis::cmd("XAUTOCLAIM")
        .arg(&cfg.key)
        .arg(&cfg.group)
        .arg(&cfg.consumer)
        .arg(cfg.claim_idle.as_millis() as u64)
        .arg(&cursor)
        .arg("COUNT")
        .arg(count)
        .query_async::<Value>(&mut conn)
        .await
        .and_then(entry::parse_autoclaim)
        .map_err(|e| fail(e, "XAUTOCLAIM"))?;
    let (next, mut entries) = reply;
    if entries.is_empty() {
        return Ok((next, entries));
    }
    let mut pipe = ::redis::pipe();
    for e in &entries {
        pipe.cmd("XPENDING")
            .arg(&cfg.key)
            .arg(&cfg.group)
            .arg(e.id)
            .arg(e.id)
            .arg(1);
    }
    let counts: Vec<Value> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| fail(e, "XPENDING"))?;
    for (e, count) in entries.iter_mut().zip(counts) {
        match entry::parse_pending_count(count).map_err(|e| fail(e, "XPENDING"))? {
            Some(n) => e.deliveries = n.max(1),
            None => e.fields = None,
        }
    }
    Ok((next, entries))
}
