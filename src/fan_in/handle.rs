//! [`FanInHandle`]: adds inputs to a running [`FanIn`](super::FanIn) from
//! other tasks.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::internal::ready_queue::OwnerWaker;

/// Inputs added through handles, waiting for the consumer to pick them up.
pub(super) struct Incoming<S> {
    streams: Mutex<Vec<S>>,
    /// Streams wait in `streams`: the consumer's cheap check.
    pub(super) any: AtomicBool,
    pub(super) handles: AtomicUsize,
    pub(super) fan_in_alive: AtomicBool,
    pub(super) owner: OwnerWaker,
}

impl<S> Incoming<S> {
    pub(super) fn new(owner: OwnerWaker) -> Self {
        Incoming {
            streams: Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            fan_in_alive: AtomicBool::new(true),
            owner,
        }
    }

    /// Takes the streams waiting to be added.
    pub(super) fn take(&self) -> Vec<S> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<S>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds inputs to a [`FanIn`](super::FanIn) from another task: see
/// [`FanIn::handle`](super::FanIn::handle).
///
/// Clone it for every task that adds inputs. The merged stream stays open
/// while any handle lives; drop them all to let it end once its inputs end.
///
/// ```
/// use futures::{stream, StreamExt};
/// use tokio_conc::fan_in::FanIn;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut merged: FanIn<stream::Iter<std::ops::Range<u8>>> = FanIn::new();
/// let handle = merged.handle();
/// handle.push(stream::iter(0..2)).unwrap();
/// drop(handle);
/// assert_eq!(merged.collect::<Vec<_>>().await, [0, 1]);
/// # }
/// ```
pub struct FanInHandle<S> {
    incoming: Arc<Incoming<S>>,
}

impl<S> FanInHandle<S> {
    pub(super) fn new(incoming: Arc<Incoming<S>>) -> Self {
        incoming.handles.fetch_add(1, Ordering::Relaxed);
        FanInHandle { incoming }
    }
}

impl<S> FanInHandle<S> {
    /// Adds `stream` as an input and wakes the consumer, which polls it on
    /// its next turn.
    ///
    /// # Errors
    ///
    /// Gives `stream` back if the [`FanIn`](super::FanIn) was dropped.
    ///
    /// ```
    /// use futures::stream;
    /// use tokio_conc::fan_in::FanIn;
    ///
    /// let merged: FanIn<stream::Iter<std::ops::Range<u8>>> = FanIn::new();
    /// let handle = merged.handle();
    /// drop(merged);
    /// assert!(handle.push(stream::iter(0..2)).is_err());
    /// ```
    pub fn push(&self, stream: S) -> Result<(), S> {
        if !self.incoming.fan_in_alive.load(Ordering::Acquire) {
            return Err(stream);
        }
        self.incoming.lock().push(stream);
        self.incoming.any.store(true, Ordering::Release);
        self.incoming.owner.wake();
        Ok(())
    }
}

impl<S> Clone for FanInHandle<S> {
    fn clone(&self) -> Self {
        FanInHandle::new(Arc::clone(&self.incoming))
    }
}

impl<S> Drop for FanInHandle<S> {
    fn drop(&mut self) {
        if self.incoming.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The consumer may be waiting only because this handle was open.
            self.incoming.owner.wake();
        }
    }
}

impl<S> fmt::Debug for FanInHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanInHandle").finish_non_exhaustive()
    }
}
