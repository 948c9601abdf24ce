//! The routing state of [`partition`](super::partition): lane buffers, the
//! held item, and the pull that fills them.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures::stream::BoxStream;

use super::super::batched::BatchedState;
use crate::internal::cancel_watch::CancelWatch;
use crate::internal::sync::{AtomicUsize, Ordering};

/// The most source items one poll of a lane takes while looking for one of its
/// own, so that a run of items for other lanes cannot monopolize the thread.
const PULL_LIMIT: usize = 64;

pub(super) type Route<T> = Box<dyn FnMut(&T) -> usize + Send>;

pub(super) struct State<T> {
    /// `None` once the source ended or the context was cancelled.
    pub(super) source: Option<BoxStream<'static, T>>,
    /// One per lane; `None` once that lane is dropped.
    pub(super) lanes: Vec<Option<VecDeque<T>>>,
    pub(super) capacity: usize,
    /// An item whose lane was full, and that lane: the source waits for it.
    pub(super) held: Option<(usize, T)>,
    pub(super) route: Route<T>,
    pub(super) skipped: u64,
    pub(super) cancel: Option<CancelWatch>,
}

/// What polling the source did for the lane that asked.
#[derive(Default)]
pub(super) struct Pulled {
    /// An item went to another lane (which may be parked, waiting for it).
    pub(super) for_others: bool,
    /// The source ended.
    pub(super) ended: bool,
    /// The pull limit was reached with the source still ready.
    pub(super) limited: bool,
    /// The last poll of the source returned an item. The source owes a
    /// wake-up only to its last poll, so it owes none now — not even to the
    /// lanes parked in `waiting` after it returned `Pending` to them.
    pub(super) owes_no_wake_up: bool,
}

impl<T> BatchedState<T> for State<T> {
    fn cancelled(&mut self) -> bool {
        if !self.cancel.as_mut().is_some_and(CancelWatch::is_cancelled) {
            return false;
        }
        self.source = None;
        self.held = None;
        self.lanes.iter_mut().flatten().for_each(VecDeque::clear);
        true
    }

    fn buffer(&mut self, slot: usize) -> Option<&mut VecDeque<T>> {
        self.lanes[slot].as_mut()
    }

    /// Its buffer and the held item if it is this lane's; at most every item
    /// the source has left on top.
    fn hint(&mut self, slot: usize) -> (usize, Option<usize>) {
        let buffered = self.lanes[slot].as_ref().map_or(0, VecDeque::len);
        let held = usize::from(matches!(self.held, Some((lane, _)) if lane == slot));
        let own = buffered + held;
        let upper = self
            .source
            .as_ref()
            .map_or(Some(0), |source| source.size_hint().1);
        (own, upper.and_then(|upper| upper.checked_add(own)))
    }

    /// The held item's lane may have taken items (without the lock) since.
    fn unblock(&mut self, batched: &[AtomicUsize]) -> bool {
        self.release_held(batched)
    }
}

impl<T> State<T> {
    /// Whether `lane` (live) has room: its buffer and its batch under capacity.
    pub(super) fn has_room(&self, lane: usize, batched: &[AtomicUsize]) -> bool {
        let buffered = self.lanes[lane].as_ref().map_or(0, VecDeque::len);
        buffered + batched[lane].load(Ordering::SeqCst) < self.capacity
    }

    /// Moves the held item into its lane once that lane has room (or skips it
    /// if the lane is gone). Returns whether the source is free again.
    pub(super) fn release_held(&mut self, batched: &[AtomicUsize]) -> bool {
        let Some((lane, _)) = self.held else {
            return false;
        };
        if self.lanes[lane].is_some() && !self.has_room(lane, batched) {
            return false;
        }
        let (lane, item) = self.held.take().expect("checked above");
        match self.lanes[lane].as_mut() {
            Some(buffer) => buffer.push_back(item),
            None => self.skip(lane, 1),
        }
        true
    }

    /// Polls the source until `slot` has an item, an item is held for a full
    /// lane, the source is pending or ended, or the pull limit is reached.
    pub(super) fn pull(
        &mut self,
        slot: usize,
        batched: &[AtomicUsize],
        cx: &mut Context<'_>,
    ) -> Pulled {
        let mut pulled = Pulled::default();
        for taken in 0.. {
            if taken == PULL_LIMIT || (taken > 0 && !tokio::task::coop::has_budget_remaining()) {
                pulled.limited = true;
                break;
            }
            let Some(source) = self.source.as_mut() else {
                break;
            };
            let item = match source.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => {
                    self.source = None;
                    pulled.ended = true;
                    break;
                }
                Poll::Pending => {
                    pulled.owes_no_wake_up = false;
                    break;
                }
            };
            pulled.owes_no_wake_up = true;
            let lane = (self.route)(&item);
            if self.lanes[lane].is_none() {
                self.skip(lane, 1);
            } else if !self.has_room(lane, batched) {
                self.held = Some((lane, item));
                break;
            } else if let Some(buffer) = self.lanes[lane].as_mut() {
                buffer.push_back(item);
                if lane == slot {
                    break;
                }
                pulled.for_others = true;
            }
        }
        pulled
    }

    pub(super) fn skip(&mut self, lane: usize, items: usize) {
        if items == 0 {
            return;
        }
        if self.skipped == 0 {
            tracing::warn!(
                lane,
                "partition: skipping items whose lane was dropped (see Lane::skipped)"
            );
        }
        self.skipped += items as u64;
    }
}
