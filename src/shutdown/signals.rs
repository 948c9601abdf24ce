//! The signal listener behind [`Shutdown::on_signals`](super::Shutdown::on_signals).
//!
//! Invariants: the handlers are registered with the OS *before* `listen`
//! returns (Tokio's `signal(kind)` and `windows::ctrl_c()` register at
//! creation), so a signal sent right after `on_signals` is caught, never the
//! default action that ends the process. The first signal triggers the drain,
//! the second skips the grace period; then the listener ends.

use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use super::state::State;
use crate::internal::runtime_handle;

/// Registers the handlers now and spawns the task that reacts to them.
pub(super) fn listen(state: Arc<State>) -> AbortOnDropHandle<()> {
    let runtime = runtime_handle("Shutdown::on_signals");
    let mut signals = {
        let _entered = runtime.enter();
        Signals::register()
    };
    let task = runtime.spawn(async move {
        let first = signals.recv().await;
        tracing::info!(signal = first, "shutdown: signal received");
        state.trigger();
        let second = signals.recv().await;
        tracing::warn!(
            signal = second,
            "shutdown: second signal received; skipping the grace period"
        );
        state.hurry();
    });
    AbortOnDropHandle::new(task)
}

#[cfg(all(unix, not(loom)))]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(all(unix, not(loom)))]
impl Signals {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind: SignalKind, name: &str| {
            signal(kind).unwrap_or_else(|err| {
                panic!("Shutdown::on_signals: cannot handle {name} (is the runtime's I/O driver enabled?): {err}")
            })
        };
        Signals {
            interrupt: register(SignalKind::interrupt(), "SIGINT"),
            terminate: register(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next signal's name. A stream that can no longer deliver (its
    /// driver is gone with the runtime) waits for ever instead of spinning.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.interrupt.recv() => "SIGINT",
            Some(()) = self.terminate.recv() => "SIGTERM",
            else => std::future::pending().await,
        }
    }
}

#[cfg(all(windows, not(loom)))]
struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
}

#[cfg(all(windows, not(loom)))]
impl Signals {
    fn register() -> Self {
        let ctrl_c = tokio::signal::windows::ctrl_c().unwrap_or_else(|err| {
            panic!("Shutdown::on_signals: cannot handle Ctrl-C (is the runtime's I/O driver enabled?): {err}")
        });
        Signals { ctrl_c }
    }

    async fn recv(&mut self) -> &'static str {
        match self.ctrl_c.recv().await {
            Some(()) => "Ctrl-C",
            None => std::future::pending().await,
        }
    }
}

/// Tokio built with `--cfg loom` (the model-checking build, see
/// `docs/reliability.md`) has no signal handling: no signal ever arrives.
#[cfg(loom)]
struct Signals;

#[cfg(loom)]
impl Signals {
    fn register() -> Self {
        Signals
    }

    async fn recv(&mut self) -> &'static str {
        std::future::pending().await
    }
}
