//! The synchronization types of the crate's hand-written protocols, swapped
//! for [loom]'s under `cfg(loom)` so that the models in each protocol's
//! `loom_tests` module explore every interleaving of them (as tokio-util does
//! for its `CancellationToken`).
//!
//! Only the files whose protocols are model-checked take their types from
//! here — `internal::{waker_set, ready_queue, cancel_watch}`, the fan-out
//! branches and the pool's hand-off and workers — everything else keeps
//! `std`'s. A `Waker` can be built only from
//! a `std::sync::Arc`, so a type that implements `Wake` stays in one; what it
//! holds comes from here.
//!
//! Run the models with (see `docs/reliability.md`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(all(test, loom)))]
pub(crate) use futures::task::AtomicWaker;
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
pub(crate) use std::time::Instant;

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(all(test, loom))]
pub(crate) use model::Instant;

/// `futures`' `AtomicWaker` API over loom's.
#[cfg(all(test, loom))]
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(all(test, loom))]
impl AtomicWaker {
    pub(crate) fn new() -> Self {
        AtomicWaker(loom::future::AtomicWaker::new())
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

/// A point where a protocol relies on the single total order of `SeqCst`
/// operations: a `SeqCst` read-modify-write (or store) of one atomic, then a
/// `SeqCst` load of another, against a thread doing the same the other way
/// round — one of the two sees the other's write. Nothing to do at run time.
/// Loom regards `SeqCst` accesses as `AcqRel` (it would report this pattern
/// as a lost wake-up it is not), so in the models it is a `SeqCst` fence,
/// which loom does model: what the models check is that the pairing is in
/// the right places; that `SeqCst` accesses alone give it is the language's.
#[inline(always)]
pub(crate) fn sc_order() {
    #[cfg(all(test, loom))]
    fence(Ordering::SeqCst);
}

/// What the loom models share: a model builder and a source stream built on
/// loom's types.
#[cfg(all(test, loom))]
pub(crate) mod model {
    use std::collections::VecDeque;
    use std::ops::Sub;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use futures::Stream;

    use super::{Arc, Mutex};

    /// A model builder: `LOOM_MAX_PREEMPTIONS` (default 3) bounds the
    /// preemptions explored per execution — bugs need few — and the other
    /// `LOOM_*` variables work as loom documents them.
    pub(crate) fn builder() -> loom::model::Builder {
        builder_with(3)
    }

    /// [`builder`] with a lower default bound, for a model whose three
    /// threads make every extra preemption cost minutes; `LOOM_MAX_PREEMPTIONS`
    /// still overrides it.
    pub(crate) fn builder_with(preemptions: usize) -> loom::model::Builder {
        // `loom::model` installs a log subscriber for `LOOM_LOG`; a builder
        // does not, so this does (once per test binary).
        if std::env::var_os("LOOM_LOG").is_some() {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOOM_LOG"))
                .with_test_writer()
                .without_time()
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        builder
    }

    /// The clock of the pool's hand-off and workers in the models: it never
    /// moves. Their timing only sizes batches and decides when a wake-up is
    /// worth sending early; a real clock would make an execution's path
    /// depend on how fast loom ran it, which loom cannot replay. Frozen, no
    /// time-based wake-up ever fires, so the models also check that nothing
    /// relies on one to make progress.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) struct Instant;

    impl Instant {
        pub(crate) fn now() -> Self {
            Instant
        }

        pub(crate) fn elapsed(self) -> Duration {
            Duration::ZERO
        }
    }

    impl Sub for Instant {
        type Output = Duration;

        fn sub(self, _earlier: Instant) -> Duration {
            Duration::ZERO
        }
    }

    struct ChanState<T> {
        items: VecDeque<T>,
        closed: bool,
        waker: Option<Waker>,
    }

    /// An unbounded channel whose receiver is a `Stream`: the source of the
    /// fan-out and fan-in models. It keeps the last waker it was polled with,
    /// as a real source does.
    pub(crate) struct Chan<T>(Arc<Mutex<ChanState<T>>>);

    impl<T> Clone for Chan<T> {
        fn clone(&self) -> Self {
            Chan(Arc::clone(&self.0))
        }
    }

    impl<T> Chan<T> {
        pub(crate) fn new() -> Self {
            Chan(Arc::new(Mutex::new(ChanState {
                items: VecDeque::new(),
                closed: false,
                waker: None,
            })))
        }

        fn update(&self, f: impl FnOnce(&mut ChanState<T>)) {
            let mut state = self.0.lock().unwrap();
            f(&mut state);
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }

        pub(crate) fn send(&self, item: T) {
            self.update(|state| state.items.push_back(item));
        }

        pub(crate) fn close(&self) {
            self.update(|state| state.closed = true);
        }
    }

    impl<T> Stream for Chan<T> {
        type Item = T;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            let mut state = self.0.lock().unwrap();
            if let Some(item) = state.items.pop_front() {
                return Poll::Ready(Some(item));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}
