//! Generators: a producer written as async code, consumed as a `Stream`.
