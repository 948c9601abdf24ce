//! [`ReorderWindow`]: results that finish out of order, released in order.

use std::collections::VecDeque;

/// Holds results keyed by their input sequence number and releases them in
/// sequence order. Its size is bounded by how far ahead of the oldest
/// unreleased item the caller lets input run: the caller must never insert a
/// sequence number more than its window ahead of [`next`](Self::next).
#[derive(Debug)]
pub(crate) struct ReorderWindow<T> {
    /// Results as they arrived, not yet looked at: mostly runs already in
    /// sequence order, which [`pop`](Self::pop) releases straight from here,
    /// so only the results that really arrive early are filed in `slots`.
    arrivals: VecDeque<(u64, T)>,
    /// Slot `i` holds the result for sequence number `next + i`, once it is done.
    slots: VecDeque<Option<T>>,
    next: u64,
}

impl<T> ReorderWindow<T> {
    pub(crate) fn new() -> Self {
        ReorderWindow {
            arrivals: VecDeque::new(),
            slots: VecDeque::new(),
            next: 0,
        }
    }

    /// Takes a batch of results (sequence numbers at or after `next`, each
    /// once), leaving `batch` empty. Costs nothing per item: they are sorted
    /// out as they are popped.
    pub(crate) fn arrive(&mut self, batch: &mut VecDeque<(u64, T)>) {
        if self.arrivals.is_empty() {
            std::mem::swap(&mut self.arrivals, batch);
        } else {
            self.arrivals.append(batch);
        }
    }

    /// Files the result for sequence number `seq` (at or after `next`).
    pub(crate) fn insert(&mut self, seq: u64, value: T) {
        let offset = usize::try_from(seq - self.next).expect("reorder offset fits in usize");
        // Results mostly arrive in order, a batch at a time: append directly.
        if offset == self.slots.len() {
            self.slots.push_back(Some(value));
            return;
        }
        while self.slots.len() <= offset {
            self.slots.push_back(None);
        }
        debug_assert!(
            self.slots[offset].is_none(),
            "sequence number {seq} filed twice"
        );
        self.slots[offset] = Some(value);
    }

    /// The sequence number released next.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// The result for [`next`](Self::next), if it is done.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        // Inlined fast path, once per item: the head is the next arrival.
        if self.slots.is_empty()
            && self
                .arrivals
                .front()
                .is_some_and(|(seq, _)| *seq == self.next)
        {
            self.next += 1;
            return self.arrivals.pop_front().map(|(_, value)| value);
        }
        self.pop_filing()
    }

    /// [`pop`](Self::pop) when results arrived early: files them until the
    /// head turns up.
    fn pop_filing(&mut self) -> Option<T> {
        loop {
            if let Some(value) = self.slots.front_mut().and_then(Option::take) {
                self.slots.pop_front();
                self.next += 1;
                return Some(value);
            }
            let (seq, value) = self.arrivals.pop_front()?;
            if seq == self.next {
                // The head, in arrival order: its slot (if any) is empty.
                self.slots.pop_front();
                self.next += 1;
                return Some(value);
            }
            self.insert(seq, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::ReorderWindow;

    #[test]
    fn releases_in_sequence_order_only() {
        let mut w = ReorderWindow::new();
        w.insert(2, 'c');
        w.insert(1, 'b');
        assert_eq!(w.pop(), None);
        w.insert(0, 'a');
        assert_eq!(
            (w.pop(), w.pop(), w.pop(), w.pop()),
            (Some('a'), Some('b'), Some('c'), None)
        );
        w.insert(3, 'd');
        assert_eq!(w.pop(), Some('d'));
    }

    #[test]
    fn arrivals_are_released_in_sequence_order_only() {
        let mut w = ReorderWindow::new();
        let mut batch = VecDeque::from([(3, 'd'), (4, 'e'), (1, 'b')]);
        w.arrive(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(w.pop(), None);
        w.insert(2, 'c');
        w.arrive(&mut VecDeque::from([(0, 'a'), (6, 'g')]));
        let popped: Vec<_> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(popped, ['a', 'b', 'c', 'd', 'e']);
        assert_eq!(w.next(), 5);
        w.arrive(&mut VecDeque::from([(5, 'f')]));
        assert_eq!((w.pop(), w.pop(), w.pop()), (Some('f'), Some('g'), None));
    }
}
