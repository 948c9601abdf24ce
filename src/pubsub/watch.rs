//! Ending a topic when its context ends, without a task.
//!
//! The topic keeps the future of its context's token, polled once with a waker
//! that holds only a weak reference to the topic. The token wakes it when the
//! context is cancelled (or its deadline passes), and the wake aborts the topic:
//! parked subscriptions and blocked publishers are woken by the abort itself.
//! Dropping the topic drops the future, which takes the waker off the token.

use std::future::Future;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Wake, Waker};

use super::core::Shared;
use crate::context::{ContextError, TaskContext};

struct OnCancel<T> {
    topic: Weak<Shared<T>>,
    ctx: TaskContext,
}

impl<T: Send + 'static> Wake for OnCancel<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(topic) = self.topic.upgrade() {
            topic.abort(self.ctx.err().unwrap_or(ContextError::Cancelled));
        }
    }
}

/// Binds `topic` to `ctx`, in place of any context it was bound to before.
pub(super) fn watch<T: Send + 'static>(topic: &Arc<Shared<T>>, ctx: &TaskContext) {
    let mut wait = Box::pin(ctx.token().cancelled_owned());
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
