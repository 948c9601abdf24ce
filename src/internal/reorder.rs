//! [`ReorderWindow`]: results that finish out of order, released in order.

use std::collections::VecDeque;

/// Holds results keyed by their input sequence number and releases them in
/// sequence order. Its size is bounded by how far ahead of the oldest
/// unreleased item the caller lets input run: the caller must never insert a
/// sequence number more than its window ahead of [`next`](Self::next).
#[derive(Debug)]
pub(crate) struct ReorderWindow<T> {
    /// Slot `i` holds the result for sequence number `next + i`, once it is done.
    slots: VecDeque<Option<T>>,
    next: u64,
}

impl<T> ReorderWindow<T> {
    pub(crate) fn new() -> Self {
        ReorderWindow {
            slots: VecDeque::new(),
            next: 0,
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
    pub(crate) fn pop(&mut self) -> Option<T> {
        let value = self.slots.front_mut()?.take()?;
        self.slots.pop_front();
        self.next += 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
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
}
