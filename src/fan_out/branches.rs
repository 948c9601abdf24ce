//! [`Branches`]: how many branches a fan-out makes, and its context.

use std::task::Waker;

use crate::context::TaskContext;
use crate::internal::cancel_watch::CancelWatch;

/// How many branches a fan-out makes, and the [`TaskContext`] that can cancel
/// them. Every fan-out operator takes `impl Into<Branches>`, so a plain `usize`
/// works when no context is needed.
///
/// ```
/// use tokio_conc::fan_out::Branches;
/// use tokio_conc::prelude::*;
///
/// let ctx = TaskContext::background();
/// let branches = Branches::new(3).context(&ctx);
/// assert_eq!(branches.count(), 3);
/// assert_eq!(Branches::from(5).count(), 5);
/// ```
#[derive(Clone, Debug)]
pub struct Branches {
    count: usize,
    context: Option<TaskContext>,
}

impl Branches {
    /// `n` branches.
    ///
    /// # Panics
    ///
    /// If `n` is 0: nothing could ever read the source.
    ///
    /// ```should_panic
    /// tokio_conc::fan_out::Branches::new(0); // panics: `n` must be at least 1
    /// ```
    pub fn new(n: usize) -> Self {
        assert!(
            n > 0,
            "`n` (the number of branches) must be at least 1, got 0"
        );
        Branches {
            count: n,
            context: None,
        }
    }

    /// Binds the branches to `ctx`: once it is cancelled (or its deadline
    /// passes) every branch ends at its next poll, parked branches are woken,
    /// buffered items are dropped and so is the source.
    ///
    /// Without it, the branches bind to the context current where the
    /// operator is built, if any: the crate's one
    /// [context rule](crate#contexts-one-rule).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::fan_out::Branches;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let mut branches = futures::stream::pending::<u32>().fan_out(Branches::new(2).context(&ctx));
    /// ctx.cancel();
    /// assert_eq!(branches[0].next().await, None);
    /// assert_eq!(branches[1].next().await, None);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The number of branches.
    ///
    /// ```
    /// assert_eq!(tokio_conc::fan_out::Branches::new(2).count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }

    /// The context set with [`context`](Self::context), if any. (Without one,
    /// the operator binds to [`TaskContext::current`] when it is built.)
    ///
    /// ```
    /// assert!(tokio_conc::fan_out::Branches::new(2).task_context().is_none());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// A watch on the context the branches bind to — the one set with
    /// [`context`](Self::context), else the one current now, at the
    /// operator's construction — that wakes `parked` on cancellation.
    pub(super) fn cancel_watch(&self, parked: &Waker) -> Option<CancelWatch> {
        crate::internal::ambient_context(self.context.as_ref())
            .map(|ctx| CancelWatch::new(ctx.token(), parked.clone()))
    }
}

impl From<usize> for Branches {
    /// `Branches::new(n)`.
    fn from(n: usize) -> Self {
        Branches::new(n)
    }
}
