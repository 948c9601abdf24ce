//! Ending a topic when its context ends, without a task.
//!
//! The topic keeps the future of its context's stop
//! ([`TaskContext::cancelled_owned`]), polled once with a waker that holds only
//! a weak reference to the topic. The token wakes it when the context is
//! cancelled, and the future's own timer when its deadline passes (no timer
//! task is spawned); the wake aborts the topic: parked subscriptions and
//! blocked publishers are woken by the abort itself. Dropping the topic drops
//! the future, which takes the waker off the token and the timer.
//!
//! Invariant: a wake aborts the topic only if the context has really stopped
//! (a runtime shutting down fires every timer, the deadline's included).
//! Binding to a context with a deadline therefore needs a Tokio runtime, as
//! any timer does.

use std::future::Future;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Wake, Waker};

use super::core::Shared;
use crate::context::TaskContext;

struct OnCancel<T> {
    topic: Weak<Shared<T>>,
    ctx: TaskContext,
}

impl<T: Send + 'static> Wake for OnCancel<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(why) = self.ctx.err()
            && let Some(topic) = self.topic.upgrade()
        {
            topic.abort(why);
        }
    }
}

/// Binds `topic` to `ctx`, in place of any context it was bound to before.
pub(super) fn watch<T: Send + 'static>(topic: &Arc<Shared<T>>, ctx: &TaskContext) {
    let mut wait = Box::pin(ctx.cancelled_owned());
    let on_cancel = Arc::new(OnCancel {
        topic: Arc::downgrade(topic),
        ctx: ctx.clone(),
    });
    let waker = Waker::from(Arc::clone(&on_cancel));
    if wait
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        on_cancel.wake_by_ref();
        return;
    }
    let old = topic
        .watch
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(wait);
    drop(old);
}
