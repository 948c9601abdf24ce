//! The consumer's end of a task that runs ahead ([`generate_ahead`] and
//! [`prefetch`]): a bounded buffer, the task's handle, and the context both
//! ends are bound to.
//!
//! Invariants: the task ends when the buffer's receiver is gone or the bound
//! context is cancelled; the consumer reports a panic of the task; a cancelled
//! context ends the stream at its next poll, dropping what is buffered.
//!
//! [`generate_ahead`]: super::generate_ahead
//! [`prefetch`]: crate::ConcurrentStreamExt::prefetch

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::context::{CancelledOwned, ContextError, TaskContext};

/// The context a task running ahead is bound to. The task starts before the
/// consumer can call `.context(&ctx)`, so the binding can change while it
/// runs: the task's waits follow the change.
pub(super) struct Link {
    ctx: Mutex<Option<TaskContext>>,
    changed: Notify,
}

impl Link {
    /// A link bound to `ctx`, if any.
    pub(super) fn new(ctx: Option<TaskContext>) -> Arc<Self> {
        Arc::new(Link {
            ctx: Mutex::new(ctx),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<TaskContext>> {
        // Nothing panics while it is held.
        self.ctx.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, ctx: &TaskContext) {
        *self.lock() = Some(ctx.clone());
        self.changed.notify_waiters();
    }

    /// Why the bound context stopped, if it did.
    pub(super) fn err(&self) -> Option<ContextError> {
        self.lock().as_ref().and_then(TaskContext::err)
    }

    /// Completes when the bound context — whichever it is by then — is
    /// cancelled.
    pub(super) async fn cancelled(&self) -> ContextError {
        loop {
            // Made before the look, so a change in between still wakes us.
            let changed = self.changed.notified();
            let ctx = self.lock().clone();
            match ctx {
                Some(ctx) => tokio::select! {
                    biased;
                    () = ctx.cancelled() => return ctx.err().unwrap_or(ContextError::Cancelled),
                    () = changed => {}
                },
                None => changed.await,
            }
        }
    }
}

/// The consumer's end of a producer task: its buffer and its handle, through
/// which a panic in the producer reaches the consumer, and its context.
pub(super) struct Buffer<T> {
    rx: mpsc::Receiver<T>,
    task: Option<JoinHandle<()>>,
    link: Arc<Link>,
    /// What `link` holds, for [`task_context`](Self::task_context).
    context: Option<TaskContext>,
    /// Ready when `context` stops; spawns nothing, a deadline included.
    cancelled: Option<Pin<Box<CancelledOwned>>>,
}

impl<T> Buffer<T> {
    pub(super) fn new(rx: mpsc::Receiver<T>, task: JoinHandle<()>, link: Arc<Link>) -> Self {
        let context = link.lock().clone();
        let cancelled = context.as_ref().map(|ctx| Box::pin(ctx.cancelled_owned()));
        Buffer {
            rx,
            task: Some(task),
            link,
            context,
            cancelled,
        }
    }

    /// Binds both ends to `ctx`, replacing the context bound before.
    pub(super) fn bind(&mut self, ctx: &TaskContext) {
        self.link.set(ctx);
        self.cancelled = Some(Box::pin(ctx.cancelled_owned()));
        self.context = Some(ctx.clone());
    }

    pub(super) fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.is_done() {
            return Poll::Ready(None);
        }
        if let Some(cancelled) = &mut self.cancelled {
            if cancelled.as_mut().poll(cx).is_ready() {
                self.cancelled = None;
                self.stop();
                return Poll::Ready(None);
            }
        }
        if let Some(item) = ready!(self.rx.poll_recv(cx)) {
            return Poll::Ready(Some(item));
        }
        // Every sender is gone, so the task is ending: wait for it to report.
        if let Some(task) = &mut self.task {
            let outcome = ready!(Pin::new(task).poll(cx));
            self.task = None;
            if let Err(error) = outcome {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        Poll::Ready(None)
    }

    /// Ends the stream now, dropping what is buffered (a cancellation).
    fn stop(&mut self) {
        self.rx.close();
        self.task = None;
    }

    pub(super) fn is_done(&self) -> bool {
        self.task.is_none()
    }

    pub(super) fn len(&self) -> usize {
        self.rx.len()
    }

    /// What is buffered will come out unless a context can stop the stream;
    /// how much more the task sends is unknown.
    pub(super) fn size_hint(&self) -> (usize, Option<usize>) {
        if self.is_done() {
            return (0, Some(0));
        }
        let lower = if self.context.is_some() {
            0
        } else {
            self.len()
        };
        (lower, None)
    }
}
