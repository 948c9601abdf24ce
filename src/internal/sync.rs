//! The synchronization types of the crate's hand-written protocols, swapped
//! for [loom]'s under `cfg(loom)` so that the models in each protocol's
//! `loom_tests` module explore every interleaving of them (as tokio-util does
//! for its `CancellationToken`).
//!
//! Only the files whose protocols are model-checked take their types from
//! here — `internal::{waker_set, ready_queue, cancel_watch}` and the fan-out
//! branches — everything else keeps `std`'s. A `Waker` can be built only from
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

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

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
