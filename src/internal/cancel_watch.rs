//! [`CancelWatch`]: a cancellation token checked with one atomic load.
//!
//! `CancellationToken::is_cancelled` takes a lock; operators that check it on
//! every item pay for that. A watch polls the token's future once, with a waker
//! that raises a flag (and wakes whoever the operator chose), so the common
//! check is an atomic load, and the token is consulted only after a wake-up.
//!
//! # Invariants
//!
//! 1. **Armed while it matters.** While the token is not cancelled, the
//!    token's future holds the signal's waker (it was polled with it and has
//!    not fired since the flag was last lowered), or the flag is raised.
//! 2. **No lost cancellation.** Once the token is cancelled, the flag is
//!    raised and the operator's waker is woken at least once, and every
//!    `is_cancelled` from then on returns `true`. The flag is lowered only
//!    by `is_cancelled`, after it found the token not cancelled, and the watch
//!    is then re-armed: the future is polled again, and if the cancel landed
//!    between the look at the token and the lowering, that poll finds the
//!    future ready and raises the flag again itself — a wake-up that fired
//!    in the gap is not needed.
//! 3. A raised flag without a cancelled token (a spurious wake-up of the
//!    token's future) costs one look at the token and a re-arm, nothing else.
//!
//! Model-checked by `loom_tests` below (`RUSTFLAGS="--cfg loom"`), with a
//! token written on loom's types in place of tokio-util's.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::internal::sync::{AtomicBool, Ordering};

/// What a [`CancelWatch`] watches: tokio-util's token, or in the loom models
/// one built on loom's types.
pub(crate) trait Token {
    /// Resolves once the token is cancelled.
    type Wait: Future<Output = ()>;

    fn is_cancelled(&self) -> bool;

    fn wait(&self) -> Self::Wait;
}

impl Token for CancellationToken {
    type Wait = WaitForCancellationFutureOwned;

    fn is_cancelled(&self) -> bool {
        CancellationToken::is_cancelled(self)
    }

    fn wait(&self) -> Self::Wait {
        self.clone().cancelled_owned()
    }
}

/// Watches a cancellation token without a lock per check: the token's future is
/// polled once, with a waker that raises a flag and wakes the operator's waiters.
pub(crate) struct CancelWatch<T: Token = CancellationToken> {
    token: T,
    wait: Pin<Box<T::Wait>>,
    signal: std::sync::Arc<CancelSignal>,
}

struct CancelSignal {
    woken: AtomicBool,
    parked: Waker,
}

impl Wake for CancelSignal {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.parked.wake_by_ref();
    }
}

impl<T: Token> CancelWatch<T> {
    /// Watches `token`; on cancellation, `parked` is woken.
    pub(crate) fn new(token: T, parked: Waker) -> Self {
        let mut watch = CancelWatch {
            wait: Box::pin(token.wait()),
            token,
            signal: std::sync::Arc::new(CancelSignal {
                woken: AtomicBool::new(false),
                parked,
            }),
        };
        watch.arm();
        watch
    }

    fn arm(&mut self) {
        let waker = Waker::from(std::sync::Arc::clone(&self.signal));
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
        CancelHint(std::sync::Arc::clone(&self.signal))
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
pub(crate) struct CancelHint(std::sync::Arc<CancelSignal>);

impl CancelHint {
    pub(crate) fn raised(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
    }
}

impl<T: Token> fmt::Debug for CancelWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelWatch")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
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

#[cfg(all(test, loom))]
mod loom_tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::internal::sync::model::builder;
    use crate::internal::sync::{Arc, Mutex};

    /// A token on loom's types with tokio-util's contract: `wait()` resolves
    /// once it is cancelled, and cancelling wakes the waiting futures. `poke`
    /// wakes them without cancelling: a spurious wake-up.
    #[derive(Clone)]
    struct LoomToken(Arc<Mutex<TokenState>>);

    #[derive(Default)]
    struct TokenState {
        cancelled: bool,
        waiters: Vec<Waker>,
    }

    impl LoomToken {
        fn new() -> Self {
            LoomToken(Arc::new(Mutex::new(TokenState::default())))
        }

        fn wake_waiters(&self, cancel: bool) {
            let mut state = self.0.lock().unwrap();
            state.cancelled |= cancel;
            let waiters = std::mem::take(&mut state.waiters);
            drop(state);
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    impl Token for LoomToken {
        type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

        fn is_cancelled(&self) -> bool {
            self.0.lock().unwrap().cancelled
        }

        fn wait(&self) -> Self::Wait {
            let token = self.clone();
            Box::pin(poll_fn(move |cx| {
                let mut state = token.0.lock().unwrap();
                if state.cancelled {
                    return Poll::Ready(());
                }
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }))
        }
    }

    /// Invariants 1 and 2: a cancel racing the re-arm after a spurious
    /// wake-up is not lost — the owner, parked until the watch says
    /// cancelled, is woken — and the hint stays raised.
    #[test]
    fn loom_cancel_racing_the_re_arm_is_not_lost() {
        builder().check(|| {
            let token = LoomToken::new();
            let canceller = {
                let token = token.clone();
                thread::spawn(move || {
                    token.wake_waiters(false);
                    token.wake_waiters(true);
                })
            };
            let mut watch = None;
            block_on(poll_fn(|cx| {
                let watch = watch
                    .get_or_insert_with(|| CancelWatch::new(token.clone(), cx.waker().clone()));
                if watch.is_cancelled() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            canceller.join().unwrap();
            let mut watch = watch.unwrap();
            assert!(watch.hint().raised());
            assert!(watch.is_cancelled());
        });
    }

    /// Invariant 3: a spurious wake-up alone never reads as cancelled, and
    /// leaves the watch armed for the real one.
    #[test]
    fn loom_a_spurious_wake_up_is_not_a_cancel() {
        builder().check(|| {
            let token = LoomToken::new();
            let mut watch = CancelWatch::new(token.clone(), Waker::noop().clone());
            let poker = {
                let token = token.clone();
                thread::spawn(move || token.wake_waiters(false))
            };
            assert!(!watch.is_cancelled());
            poker.join().unwrap();
            assert!(!watch.is_cancelled());
            token.wake_waiters(true);
            assert!(watch.hint().raised());
            assert!(watch.is_cancelled());
        });
    }
}
