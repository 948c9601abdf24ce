//! The consumer's end of a task that runs ahead: a bounded buffer, and the
//! task's handle.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The consumer's end of a producer task: its buffer and its handle, through
/// which a panic in the producer reaches the consumer.
pub(super) struct Buffer<T> {
    rx: mpsc::Receiver<T>,
    task: Option<JoinHandle<()>>,
}

impl<T> Buffer<T> {
    pub(super) fn new(rx: mpsc::Receiver<T>, task: JoinHandle<()>) -> Self {
        Buffer {
            rx,
            task: Some(task),
        }
    }

    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.is_done() {
            return Poll::Ready(None);
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
    pub(super) fn stop(&mut self) {
        self.rx.close();
        self.task = None;
    }

    pub(super) fn is_done(&self) -> bool {
        self.task.is_none()
    }

    pub(super) fn len(&self) -> usize {
        self.rx.len()
    }
}
