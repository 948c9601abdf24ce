//! Fan-in: many streams merged into one, fairly.
