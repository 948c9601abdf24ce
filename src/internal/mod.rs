//! Machinery shared by several operators. Nothing here is public.

pub(crate) mod cancel_watch;
pub(crate) mod ready_queue;
pub(crate) mod reorder;
pub(crate) mod sync;
#[cfg(all(test, not(loom)))]
pub(crate) mod wake_counter;
pub(crate) mod waker_set;

use crate::context::TaskContext;

/// The context an operator or type binds to: the one given explicitly, else
/// the one current where it is built ([`TaskContext::current`]), else none.
/// The one rule every operator follows: see the crate docs, "Contexts".
pub(crate) fn ambient_context(explicit: Option<&TaskContext>) -> Option<TaskContext> {
    explicit.cloned().or_else(TaskContext::current)
}

/// The current runtime's handle, or a panic naming `operator`: spawning
/// operators need a runtime and should say which one was misused.
pub(crate) fn runtime_handle(operator: &str) -> tokio::runtime::Handle {
    tokio::runtime::Handle::try_current()
        .unwrap_or_else(|_| panic!("{operator} must be called within a Tokio runtime"))
}
