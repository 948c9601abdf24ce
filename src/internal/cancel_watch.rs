//! [`CancelWatch`]: a cancellation token checked with one atomic load.
//!
//! `CancellationToken::is_cancelled` takes a lock; operators that check it on
//! every item pay for that. A watch polls the token's future once, with a waker
//! that raises a flag (and wakes whoever the operator chose), so the common
//! check is an atomic load, and the token is consulted only after a wake-up.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Watches a cancellation token without a lock per check: the token's future is
/// polled once, with a waker that raises a flag and wakes the operator's waiters.
pub(crate) struct CancelWatch {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<CancelSignal>,
}

struct CancelSignal {
    woken: AtomicBool,
    parked: Waker,
}

impl Wake for CancelSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.parked.wake_by_ref();
    }
}

impl CancelWatch {
    /// Watches `token`; on cancellation, `parked` is woken.
    pub(crate) fn new(token: CancellationToken, parked: Waker) -> Self {
        let mut watch = CancelWatch {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            signal: Arc::new(CancelSignal {
                woken: AtomicBool::new(false),
                parked,
            }),
        };
        watch.arm();
        watch
    }

    fn arm(&mut self) {
        let waker = Waker::from(Arc::clone(&self.signal));
        if self
            .wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.signal.woken.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a cancellation may have happened: one atomic load, no lock. Only
    /// a `true` needs [`is_cancelled`](Self::is_cancelled) to confirm it.
    pub(crate) fn hint(&self) -> CancelHint {
        CancelHint(Arc::clone(&self.signal))
    }

    /// One atomic load while nothing happened; the token's lock only after a
    /// wake-up, which is re-armed if it was spurious.
    pub(crate) fn is_cancelled(&mut self) -> bool {
        if !self.signal.woken.load(Ordering::SeqCst) {
            return false;
        }
        if self.token.is_cancelled() {
            return true;
        }
        self.signal.woken.store(false, Ordering::SeqCst);
        self.arm();
        self.signal.woken.load(Ordering::SeqCst) && self.token.is_cancelled()
    }
}

/// A lock-free "maybe cancelled" flag, for paths that do not take the lock.
pub(crate) struct CancelHint(Arc<CancelSignal>);

impl CancelHint {
    pub(crate) fn raised(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelWatch")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::wake_counter::WakeCounter;

    #[test]
    fn cancelling_raises_the_hint_and_wakes_the_waiters() {
        let token = CancellationToken::new();
        let woken = WakeCounter::new();
        let mut watch = CancelWatch::new(token.child_token(), woken.waker());
        let hint = watch.hint();
        assert!(!hint.raised());
        assert!(!watch.is_cancelled());
        token.cancel();
        assert!(hint.raised());
        assert!(watch.is_cancelled());
        assert_eq!(woken.count(), 1);
    }

    #[test]
    fn an_already_cancelled_token_is_seen_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let mut watch = CancelWatch::new(token, Waker::noop().clone());
        assert!(watch.is_cancelled());
    }
}
