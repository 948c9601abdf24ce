//! Machinery shared by several operators. Nothing here is public.

/// The current runtime's handle, or a panic naming `operator`: spawning
/// operators need a runtime and should say which one was misused.
#[allow(dead_code)]
pub(crate) fn runtime_handle(operator: &str) -> tokio::runtime::Handle {
    tokio::runtime::Handle::try_current()
        .unwrap_or_else(|_| panic!("{operator} must be called within a Tokio runtime"))
}

pub(crate) mod reorder;
