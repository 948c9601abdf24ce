//! [`Delivery`] and its ack handle [`Ack`].
//!
//! Invariants: an `Ack` settles its entry exactly once — acknowledged,
//! failed, committed or, when dropped without a verdict, released (the entry
//! stays pending and is reclaimed after `claim_idle`). Each verdict is one
//! message to the ack task; nothing here waits, except [`Ack::commit`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use ::redis::{Pipeline, Value};

use super::entry::EntryId;
use super::error::Error;
use super::shared::{AckLink, AckMsg};

/// One entry of the stream, delivered to this consumer: its id, its fields
/// (decoded, or raw [`Fields`](super::Fields)), how many times it has been
/// delivered, and the [`Ack`] handle that settles it.
///
/// Settle it one way: [`ack`](Self::ack) when it was handled,
/// [`fail`](Self::fail) when it was not, or let [`ack_after`](Self::ack_after)
/// choose from a handler's result. A delivery dropped unsettled stays pending
/// in the group and is delivered again (to any consumer) after the source's
/// `claim_idle`: at-least-once.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
/// # fn main() { doc_example(|mut source| async move {
/// use futures::StreamExt;
///
/// let delivery = source.next().await.unwrap()?;
/// println!("{} (delivery {})", delivery.id(), delivery.delivery_count());
/// let job: u32 = delivery.fields().parse("job").unwrap();
/// delivery.ack();
/// # let _ = job; Ok(()) }) }
/// ```
pub struct Delivery<T> {
    fields: T,
    ack: Ack,
}

impl<T> Delivery<T> {
    pub(crate) fn new(fields: T, ack: Ack) -> Self {
        Delivery { fields, ack }
    }

    /// The entry's id.
    pub fn id(&self) -> EntryId {
        self.ack.id
    }

    /// How many times the entry has been delivered, this time included: 1 the
    /// first time, more after a failure or a consumer that died.
    pub fn delivery_count(&self) -> u64 {
        self.ack.deliveries
    }

    /// The entry's fields, decoded.
    pub fn fields(&self) -> &T {
        &self.fields
    }

    /// The entry's fields, decoded, to change in place.
    pub fn fields_mut(&mut self) -> &mut T {
        &mut self.fields
    }

    /// The fields and the ack handle, to settle the entry later or elsewhere.
    pub fn into_parts(self) -> (T, Ack) {
        (self.fields, self.ack)
    }

    /// Acknowledges the entry: it leaves the group's pending list with the
    /// next batched `XACK` (within the source's `ack_interval`).
    pub fn ack(self) {
        self.ack.ack()
    }

    /// Records that handling failed. Below the source's `max_deliveries` the
    /// entry stays pending and is delivered again after `claim_idle`; at
    /// `max_deliveries` it moves to the dead-letter stream with `error`, and
    /// is acknowledged.
    pub fn fail(self, error: impl fmt::Display) {
        self.ack.fail(error)
    }

    /// Runs `handle` on the fields and settles the entry by its result:
    /// acknowledged after `Ok`, [failed](Self::fail) with the error after
    /// `Err`. Returns the result. Dropping the future before it finishes
    /// leaves the entry pending.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
    /// # fn main() { doc_example(|mut source| async move {
    /// use futures::StreamExt;
    ///
    /// let delivery = source.next().await.unwrap()?;
    /// let doubled = delivery
    ///     .ack_after(|fields| async move { fields.parse::<u32>("job").map(|n| n * 2) })
    ///     .await;
    /// assert_eq!(doubled.unwrap(), 2);
    /// # Ok(()) }) }
    /// ```
    pub async fn ack_after<F, Fut, U, E>(self, handle: F) -> Result<U, E>
    where
        F: FnOnce(T) -> Fut,
        Fut: Future<Output = Result<U, E>>,
        E: fmt::Display,
    {
        let (fields, ack) = self.into_parts();
        let result = handle(fields).await;
        match &result {
            Ok(_) => ack.ack(),
            Err(e) => ack.fail(e),
        }
        result
    }
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.ack.id)
            .field("delivery_count", &self.ack.deliveries)
            .field("fields", &self.fields)
            .finish()
    }
}

/// The handle that settles one delivered entry; see [`Delivery`].
///
/// Dropped without a verdict, it releases the entry: it stays pending in the
/// group and is delivered again after the source's `claim_idle`.
pub struct Ack {
    id: EntryId,
    deliveries: u64,
    link: Option<Arc<AckLink>>,
}

impl Ack {
    pub(crate) fn new(id: EntryId, deliveries: u64, link: Arc<AckLink>) -> Self {
        Ack {
            id,
            deliveries,
            link: Some(link),
        }
    }

    /// The entry's id.
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// How many times the entry has been delivered, this time included.
    pub fn delivery_count(&self) -> u64 {
        self.deliveries
    }

    fn settle(&mut self, msg: impl FnOnce(&AckLink) -> AckMsg) {
        if let Some(link) = self.link.take() {
            link.send(msg(&link));
        }
    }

    /// Acknowledges the entry with the next batched `XACK`.
    pub fn ack(mut self) {
        let id = self.id;
        self.settle(|_| AckMsg::Ack(id));
    }

    /// Records a failure: see [`Delivery::fail`].
    pub fn fail(mut self, error: impl fmt::Display) {
        let (id, deliveries) = (self.id, self.deliveries);
        self.settle(|link| {
            if deliveries >= link.shared.cfg.max_deliveries {
                AckMsg::DeadLetter {
                    id,
                    deliveries,
                    error: error.to_string(),
                }
            } else {
                tracing::debug!(key = %link.shared.cfg.key, %id, deliveries, %error,
                    "redis source: handler failed; the entry stays pending");
                AckMsg::Release(id)
            }
        });
    }

    /// Runs `pipeline` and the entry's `XACK` in one `MULTI`/`EXEC`
    /// transaction, now (not batched): the pipeline's writes and the
    /// acknowledgement happen together or not at all, so a result written this
    /// way is written once even when a worker dies at any point. Redis does
    /// not roll a transaction back: a command of the pipeline that fails as it
    /// runs (a wrong type, say) does not stop the others or the `XACK`.
    ///
    /// On an error the entry stays pending, as if the handle were dropped.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/redis_doc.rs"));
    /// # fn main() { doc_example(|mut source| async move {
    /// use futures::StreamExt;
    ///
    /// let delivery = source.next().await.unwrap()?;
    /// let job: u32 = delivery.fields().parse("job").unwrap();
    /// let mut results = tokio_conc::redis::driver::pipe();
    /// results.cmd("XADD").arg("doc-results").arg("*").arg("job").arg(job).ignore();
    /// let (_, ack) = delivery.into_parts();
    /// ack.commit(results).await?;
    /// # Ok(()) }) }
    /// ```
    pub async fn commit(mut self, mut pipeline: Pipeline) -> Result<(), Error> {
        let Some(link) = self.link.as_ref() else {
            return Ok(());
        };
        let cfg = &link.shared.cfg;
        pipeline
            .atomic()
            .cmd("XACK")
            .arg(&cfg.key)
            .arg(&cfg.group)
            .arg(self.id)
            .ignore();
        let mut conn = link.shared.conn.clone();
        match pipeline.query_async::<Value>(&mut conn).await {
            Ok(_) => {
                let id = self.id;
                self.settle(|_| AckMsg::Release(id));
                Ok(())
            }
            Err(e) => Err(Error::from_command(e, &cfg.server, &cfg.key, "MULTI/EXEC")),
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        let id = self.id;
        self.settle(|_| AckMsg::Release(id));
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("id", &self.id)
            .field("delivery_count", &self.deliveries)
            .field("settled", &self.link.is_none())
            .finish()
    }
}
