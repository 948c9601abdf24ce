//! Rate limiting on governor (GCRA), on Tokio's clock.
