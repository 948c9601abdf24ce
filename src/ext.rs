//! [`ConcurrentStreamExt`]: the operators, as methods on every `Stream`.
//!
//! A thin façade: each method documents the operator and delegates, in one
//! line, to the module that implements it.

use futures::Stream;

/// Concurrency operators for every [`Stream`]: `use tokio_conc::prelude::*;`
/// brings them in.
pub trait ConcurrentStreamExt: Stream {
    // ----------------------------------------------------------------------
    // generator

    // ----------------------------------------------------------------------
    // worker pools

    // ----------------------------------------------------------------------
    // fan-out

    // ----------------------------------------------------------------------
    // rate limiting

    // ----------------------------------------------------------------------
}

impl<S: Stream + ?Sized> ConcurrentStreamExt for S {}
