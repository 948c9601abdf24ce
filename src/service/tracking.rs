//! Requests in flight as tracked tasks of a [`Shutdown`] — spawned only
//! once the shutdown drains, so serving costs a map insert and remove per
//! request, not a task.
//!
//! Invariants (all under the registry's one lock):
//!
//! * Before the drain, every request in flight has an entry and no task.
//! * The first request spawns the *watcher*, itself a tracked task of the
//!   shutdown: from then on the shutdown cannot see "every task ended" while
//!   the watcher has yet to hand the requests over. When draining begins the
//!   watcher sets `draining`, spawns a tracked task for every entry, and ends.
//! * Once `draining` is set, a new request gets its tracked task at once.
//! * A request's end removes its entry; the entry's sender goes with it, and
//!   that ends the request's tracked task, if it has one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use http::{Method, Request, Uri};
use tokio::sync::oneshot;

use super::request_id::RequestId;
use crate::shutdown::Shutdown;

/// The requests of one layer, for one shutdown.
pub(super) struct Tracking {
    shutdown: Shutdown,
    registry: Mutex<Registry>,
    watcher: OnceLock<()>,
}

#[derive(Default)]
struct Registry {
    draining: bool,
    next: u64,
    in_flight: HashMap<u64, InFlight>,
}

/// What names a request in the report, and (once it is a tracked task) the
/// sender whose drop ends that task.
struct InFlight {
    method: Method,
    uri: Uri,
    id: RequestId,
    done: Option<oneshot::Sender<()>>,
}

impl InFlight {
    /// `GET /path request_id=…`: the path, never the query.
    fn name(&self) -> String {
        format!("{} {} request_id={}", self.method, self.uri.path(), self.id)
    }

    /// Makes the request a tracked task of `shutdown`, ending with `done`.
    fn track(&mut self, shutdown: &Shutdown) {
        let (done, ended) = oneshot::channel::<()>();
        self.done = Some(done);
        drop(shutdown.spawn(self.name(), async move {
            let _ = ended.await;
        }));
    }
}

/// A request's place in the registry; dropping it ends the request.
pub(super) struct Ticket {
    tracking: Arc<Tracking>,
    key: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let removed = self.tracking.lock().in_flight.remove(&self.key);
        // Its sender, if any, ends the tracked task — outside the lock.
        drop(removed);
    }
}

impl Tracking {
    pub(super) fn new(shutdown: &Shutdown) -> Self {
        Tracking {
            shutdown: shutdown.clone(),
            registry: Mutex::default(),
            watcher: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `request`, tracked at once if the shutdown is draining.
    pub(super) fn enter<B>(self: &Arc<Self>, request: &Request<B>, id: &RequestId) -> Ticket {
        self.watcher.get_or_init(|| self.spawn_watcher());
        let mut entry = InFlight {
            method: request.method().clone(),
            uri: request.uri().clone(),
            id: id.clone(),
            done: None,
        };
        let mut registry = self.lock();
        if registry.draining {
            entry.track(&self.shutdown);
        }
        let key = registry.next;
        registry.next += 1;
        registry.in_flight.insert(key, entry);
        Ticket {
            tracking: Arc::clone(self),
            key,
        }
    }

    /// The tracked task that hands the requests in flight over to the
    /// shutdown when it drains. It holds the registry weakly: a layer that
    /// is gone has no requests to hand over.
    fn spawn_watcher(self: &Arc<Self>) {
        let draining = self.shutdown.draining();
        let tracking = Arc::downgrade(self);
        drop(self.shutdown.spawn("ContextLayer", async move {
            draining.await;
            let Some(tracking) = tracking.upgrade() else {
                return;
            };
            let mut registry = tracking.lock();
            registry.draining = true;
            for request in registry.in_flight.values_mut() {
                request.track(&tracking.shutdown);
            }
        }));
    }
}
