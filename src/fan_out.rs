//! Fan-out: one stream split into many branches.
