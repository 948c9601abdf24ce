//! Helpers shared by the pool suites (`par_map*`).

use tokio_conc::ContextError;

/// The error of the `try_` pool operators under test: an item's own failure,
/// or the pool's context stopping the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Fail {
    Item(u32),
    Stopped(ContextError),
}

impl From<ContextError> for Fail {
    fn from(e: ContextError) -> Self {
        Fail::Stopped(e)
    }
}
