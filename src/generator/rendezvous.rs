//! The hand-over point of a lazy generator: one item at a time passes from
//! the producer's [`Yielder::send`](super::Yielder::send) to the stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::Closed;
use crate::context::TaskContext;

/// A one-item hand-over point between the producer's `Yielder` and the
/// stream. Sends are numbered so a send knows when *its* item was taken.
pub(super) struct Rendezvous<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    item: Option<T>,
    /// How many items were handed over, and how many of them the consumer took.
    offered: u64,
    taken: u64,
    closed: Option<Closed>,
    context: Option<TaskContext>,
    /// The consumer's task: woken only when a send happens outside its poll
    /// (a producer that moved its yielder into another task).
    consumer: Option<Waker>,
    /// Sends waiting in other tasks than the consumer's.
    waiting: Vec<Waker>,
}

impl<T> Rendezvous<T> {
    pub(super) fn new() -> Self {
        Rendezvous {
            state: Mutex::new(State {
                item: None,
                offered: 0,
                taken: 0,
                closed: None,
                context: None,
                consumer: None,
                waiting: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held except user `Drop`s of items;
        // the state stays consistent either way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_context(&self, ctx: &TaskContext) {
        self.lock().context = Some(ctx.clone());
    }

    pub(super) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed.is_some()
            || state
                .context
                .as_ref()
                .is_some_and(TaskContext::is_cancelled)
    }

    pub(super) fn close(&self, reason: Closed) {
        let mut state = self.lock();
        state.closed.get_or_insert(reason);
        state.item = None;
        state.wake_waiting();
    }

    /// The consumer's side: remember its waker, take a handed-over item.
    pub(super) fn take(&self, consumer: &Waker) -> Option<T> {
        let mut state = self.lock();
        if !state
            .consumer
            .as_ref()
            .is_some_and(|w| w.will_wake(consumer))
        {
            state.consumer = Some(consumer.clone());
        }
        let item = state.item.take()?;
        state.taken += 1;
        state.wake_waiting();
        Some(item)
    }
}

impl<T> State<T> {
    fn wake_waiting(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    fn closed_reason(&self) -> Option<Closed> {
        if let Some(reason) = &self.closed {
            return Some(reason.clone());
        }
        let ctx = self.context.as_ref()?;
        ctx.err().map(Closed::cancelled)
    }

    /// Parks a send. A send polled from the consumer's own task needs no
    /// waker: the consumer polls the producer again when it wants an item.
    fn park(&mut self, waker: &Waker) {
        let own_task = self.consumer.as_ref().is_some_and(|w| w.will_wake(waker));
        if !own_task && !self.waiting.iter().any(|w| w.will_wake(waker)) {
            self.waiting.push(waker.clone());
        }
    }
}

/// The future behind `Yielder::send` on a lazy generator: hand the item
/// over, then wait until the consumer took it.
pub(super) struct Offer<'a, T> {
    slot: &'a Rendezvous<T>,
    value: Option<T>,
    /// The number of this send once its item is handed over; 0 before.
    ticket: u64,
}

// `value` is never pinned: it is moved out by value.
impl<T> Unpin for Offer<'_, T> {}

impl<'a, T> Offer<'a, T> {
    pub(super) fn new(slot: &'a Rendezvous<T>, value: T) -> Self {
        Offer {
            slot,
            value: Some(value),
            ticket: 0,
        }
    }
}

impl<T> Future for Offer<'_, T> {
    type Output = Result<(), Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this.slot.lock();
        if this.ticket != 0 && state.taken >= this.ticket {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = state.closed_reason() {
            this.value = None;
            return Poll::Ready(Err(reason));
        }
        if this.ticket == 0 {
            if state.item.is_some() {
                // Another send's item is still waiting: queue behind it.
                state.park(cx.waker());
                return Poll::Pending;
            }
            state.item = this.value.take();
            state.offered += 1;
            this.ticket = state.offered;
            if let Some(consumer) = &state.consumer {
                if !consumer.will_wake(cx.waker()) {
                    consumer.wake_by_ref();
                }
            }
        }
        state.park(cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for Offer<'_, T> {
    fn drop(&mut self) {
        if self.ticket == 0 {
            return;
        }
        let mut state = self.slot.lock();
        if state.taken < self.ticket && state.offered == self.ticket && state.item.is_some() {
            // Cancelled before the consumer took it: take the item back.
            state.item = None;
            state.offered -= 1;
            state.wake_waiting();
        }
    }
}
