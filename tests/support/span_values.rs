//! Span values shared by the context suites (`context`, `tracing_spans`).

// Each suite uses its own subset.
#![allow(dead_code)]

use std::fmt;

use tokio_conc::context::SpanValue;

/// Recorded as `session_id=..`.
pub struct SessionId(pub u32);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl SpanValue for SessionId {
    const FIELD: &'static str = "session_id";
}

/// Recorded as `tenant=..`.
pub struct Tenant(pub &'static str);

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl SpanValue for Tenant {
    const FIELD: &'static str = "tenant";
}
