//! [`Workers`]: how many workers a pool runs, and with what context, buffer and name.

use std::borrow::Cow;

use crate::context::TaskContext;

/// The buffer when [`Workers::buffer`] is not set, for at most 128 workers:
/// the stream operators hand items over in batches and need a batch to hand.
const DEFAULT_BUFFER: usize = 256;

/// The settings of a worker pool: how many calls run at once, how many items
/// may wait ahead of them, the [`TaskContext`] that can cancel them, and a name
/// for their `tracing` spans.
///
/// Every pool operator takes `impl Into<Workers>`, so a plain `usize` works
/// where the defaults do.
///
/// ```
/// use tokio_conc::prelude::*;
///
/// let ctx = TaskContext::background();
/// let workers = Workers::new(8).context(&ctx).buffer(32).name("charge");
/// assert_eq!(workers.count(), 8);
/// assert_eq!(workers.buffer_size(), 32);
/// assert_eq!(workers.label(), "charge");
///
/// let plain: Workers = 4.into();
/// assert_eq!(plain.count(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct Workers {
    count: usize,
    buffer: Option<usize>,
    context: Option<TaskContext>,
    name: Cow<'static, str>,
}

impl Workers {
    /// `count` workers: at most `count` calls of the pool's function run at once.
    ///
    /// # Panics
    ///
    /// If `count` is 0: a pool with no workers would never make progress.
    ///
    /// ```should_panic
    /// tokio_conc::pool::Workers::new(0); // panics: `workers` must be at least 1
    /// ```
    pub fn new(count: usize) -> Self {
        assert!(count > 0, "`workers` must be at least 1, got 0");
        Workers {
            count,
            buffer: None,
            context: None,
            name: Cow::Borrowed("pool"),
        }
    }

    /// How many items may wait ahead of the workers: for the stream operators
    /// (`par_map` and kin), how many input items beyond the `count` in the
    /// workers' hands may be pulled and not yet yielded (queued, or waiting
    /// to be reordered); for a [`WorkerPool`](super::WorkerPool), how many
    /// jobs its queue holds. Defaults to 256, or twice the worker count if
    /// that is more ([`buffer_size`](Self::buffer_size) says which): the
    /// stream operators hand items over in batches and need a batch to hand.
    ///
    /// # Panics
    ///
    /// If `buffer` is 0.
    ///
    /// ```
    /// let w = tokio_conc::pool::Workers::new(2).buffer(10);
    /// assert_eq!(w.buffer_size(), 10);
    /// ```
    pub fn buffer(mut self, buffer: usize) -> Self {
        assert!(buffer > 0, "`buffer` must be at least 1, got 0");
        self.buffer = Some(buffer);
        self
    }

    /// The context the workers run under: it is current inside every call
    /// ([`TaskContext::current`]), and cancelling it stops the pool. Without
    /// one, a pool is bound to the context current where it is built, if
    /// any — the crate's one rule for every operator.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// let ctx = TaskContext::background();
    /// let w = Workers::new(2).context(&ctx);
    /// assert!(w.task_context().is_some());
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The name recorded in each worker's `tracing` span (default `"pool"`).
    ///
    /// ```
    /// let w = tokio_conc::pool::Workers::new(2).name("resize");
    /// assert_eq!(w.label(), "resize");
    /// ```
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The number of workers.
    ///
    /// ```
    /// assert_eq!(tokio_conc::pool::Workers::new(3).count(), 3);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }

    /// The buffer the pool uses: the one set by [`buffer`](Self::buffer), or
    /// the default, 256 or twice the worker count if that is more. A stream
    /// operator pulls at most `count() + buffer_size()` items ahead of its
    /// output.
    ///
    /// ```
    /// use tokio_conc::pool::Workers;
    ///
    /// assert_eq!(Workers::new(3).buffer_size(), 256);
    /// assert_eq!(Workers::new(200).buffer_size(), 400);
    /// assert_eq!(Workers::new(3).buffer(10).buffer_size(), 10);
    /// ```
    pub fn buffer_size(&self) -> usize {
        self.buffer
            .unwrap_or(DEFAULT_BUFFER.max(self.count.saturating_mul(2)))
    }

    /// The context set by [`context`](Self::context), if any (the getter of
    /// that setter: a builder's getter is named `task_context`).
    ///
    /// ```
    /// assert!(tokio_conc::pool::Workers::new(3).task_context().is_none());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// The name set by [`name`](Self::name).
    ///
    /// ```
    /// assert_eq!(tokio_conc::pool::Workers::new(3).label(), "pool");
    /// ```
    pub fn label(&self) -> &str {
        &self.name
    }
}

/// `n` workers with the default buffer, no context and the name `"pool"`.
///
/// # Panics
///
/// If `n` is 0.
impl From<usize> for Workers {
    fn from(n: usize) -> Self {
        Workers::new(n)
    }
}
