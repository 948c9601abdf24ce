//! The ack task: one per source. It batches acknowledgements into one `XACK`
//! for many ids, moves poison entries to the dead-letter stream, and gives back
//! entries read but never handed out.
//!
//! Invariants:
//! - It owns the receiving end of the ack channel and no sender, so it runs
//!   until the stream *and* every ack handle are gone — a source closed or
//!   dropped mid-run still flushes the acknowledgements of deliveries that
//!   finish after it — and then flushes once more and ends.
//! - Acknowledgements wait at most `ack_interval`; they go sooner when `batch`
//!   of them are waiting or when the reader waits for room.
//! - A slot of the window is given back only after the server answered for
//!   the entry (see `shared.rs`); a failed command is reported to the stream
//!   and its slots given back, so the reader never waits on them.
//! - Only one command of this task is in flight at a time; what arrives
//!   meanwhile is batched into the next.

use std::sync::Arc;

use ::redis::{Script, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::entry::EntryId;
use super::error::Error;
use super::shared::{AckMsg, Shared};

/// Ids per `XACK`; more go in one pipeline of several.
const IDS_PER_XACK: usize = 1024;

/// Messages taken from the channel per wake-up.
const MSGS_PER_TURN: usize = 1024;

/// Moves one entry to the dead-letter stream and acknowledges it, atomically,
/// and only if it is still pending for this consumer (another consumer may
/// have reclaimed it meanwhile). The entry's own fields follow the
/// `dead_letter.*` fields that say where it came from and why.
const DEAD_LETTER_LUA: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
local args = {KEYS[2], '*',
  'dead_letter.stream', KEYS[1], 'dead_letter.id', ARGV[3],
  'dead_letter.group', ARGV[1], 'dead_letter.consumer', ARGV[2],
  'dead_letter.deliveries', ARGV[4], 'dead_letter.error', ARGV[5]}
local found = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #found > 0 then
  for _, v in ipairs(found[1][2]) do args[#args + 1] = v end
end
redis.call('XADD', unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
";

pub(crate) async fn run(shared: Arc<Shared>, mut rx: UnboundedReceiver<AckMsg>) {
    let script = Script::new(DEAD_LETTER_LUA);
    let mut acks: Vec<EntryId> = Vec::new();
    let mut msgs = Vec::with_capacity(MSGS_PER_TURN);
    let mut due = Instant::now();
    loop {
        let got = if acks.is_empty() {
            rx.recv_many(&mut msgs, MSGS_PER_TURN).await
        } else {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut msgs, MSGS_PER_TURN) => n,
                () = tokio::time::sleep_until(due) => {
                    flush(&shared, &mut acks).await;
                    continue;
                }
            }
        };
        if got == 0 {
            flush(&shared, &mut acks).await;
            return;
        }
        let mut now = false;
        for msg in msgs.drain(..) {
            match msg {
                AckMsg::Ack(id) => {
                    if acks.is_empty() {
                        due = Instant::now() + shared.cfg.ack_interval;
                    }
                    acks.push(id);
                }
                AckMsg::Release(id) => shared.release(&[id]),
                AckMsg::DeadLetter {
                    id,
                    deliveries,
                    error,
                } => dead_letter(&shared, &script, id, deliveries, &error).await,
                AckMsg::GiveBack(entries) => give_back(&shared, entries).await,
                AckMsg::FlushNow => now = true,
            }
        }
        if now || acks.len() >= shared.cfg.batch || (!acks.is_empty() && Instant::now() >= due) {
            flush(&shared, &mut acks).await;
        }
    }
}

/// One `XACK` per [`IDS_PER_XACK`] ids, pipelined.
async fn flush(shared: &Shared, acks: &mut Vec<EntryId>) {
    if acks.is_empty() {
        return;
    }
    let cfg = &shared.cfg;
    let mut pipe = ::redis::pipe();
    for chunk in acks.chunks(IDS_PER_XACK) {
        pipe.cmd("XACK")
            .arg(&cfg.key)
            .arg(&cfg.group)
            .arg(chunk)
            .ignore();
    }
    let mut conn = shared.conn.clone();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        shared.fail(Error::from_command(e, &cfg.server, &cfg.key, "XACK"));
    }
    shared.release(acks);
    acks.clear();
}

async fn dead_letter(shared: &Shared, script: &Script, id: EntryId, deliveries: u64, error: &str) {
    let cfg = &shared.cfg;
    tracing::warn!(
        key = %cfg.key, %id, deliveries, error,
        dead_letter = %cfg.dead_letter, "redis source: entry moved to the dead-letter stream"
    );
    let mut conn = shared.conn.clone();
    let moved = script
        .key(&cfg.key)
        .key(&cfg.dead_letter)
        .arg(&cfg.group)
        .arg(&cfg.consumer)
        .arg(id)
        .arg(deliveries)
        .arg(error)
        .invoke_async::<Value>(&mut conn)
        .await;
    if let Err(e) = moved {
        shared.fail(Error::from_command(
            e,
            &cfg.server,
            &cfg.dead_letter,
            "XADD (dead letter)",
        ));
    }
    shared.release(&[id]);
}

/// `XCLAIM ... IDLE claim_idle RETRYCOUNT n JUSTID` to ourselves: the entries
/// stay pending but look idle long enough for any consumer's reclaim, and
/// their delivery count is what it was before we read them.
async fn give_back(shared: &Shared, mut entries: Vec<(EntryId, u64)>) {
    let cfg = &shared.cfg;
    entries.sort_by_key(|&(_, n)| n);
    let mut pipe = ::redis::pipe();
    for run in entries.chunk_by(|a, b| a.1 == b.1) {
        let ids: Vec<EntryId> = run.iter().map(|&(id, _)| id).collect();
        pipe.cmd("XCLAIM")
            .arg(&cfg.key)
            .arg(&cfg.group)
            .arg(&cfg.consumer)
            .arg(0)
            .arg(&ids)
            .arg("IDLE")
            .arg(cfg.claim_idle.as_millis() as u64)
            .arg("RETRYCOUNT")
            .arg(run[0].1.saturating_sub(1))
            .arg("JUSTID")
            .ignore();
    }
    let mut conn = shared.conn.clone();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        // Nothing is lost: the entries stay pending and are reclaimed after
        // `claim_idle` as they would have been.
        tracing::debug!(key = %cfg.key, error = %e, "redis source: give-back failed");
    }
    let ids: Vec<EntryId> = entries.into_iter().map(|(id, _)| id).collect();
    shared.release(&ids);
}
