//! [`ReorderWindow`]: results that finish out of order, released in order.

use std::collections::{BTreeMap, VecDeque};

/// Holds results keyed by their input sequence number and releases them in
/// sequence order. Its size is bounded by how far ahead of the oldest
/// unreleased item the caller lets input run: the caller must never hand in
/// a sequence number more than its window ahead of [`next`](Self::next).
///
/// Results arrive as runs of consecutive sequence numbers (a worker's batch
/// is a contiguous slice of the input). A run that arrives early is set
/// aside whole, keyed by its first sequence number, and released from when
/// the head reaches it: nothing is filed one item at a time.
#[derive(Debug)]
pub(crate) struct ReorderWindow<T> {
    /// Results as they arrived, released from the front while the front is
    /// the head; an early run at the front is moved to `early`.
    arrivals: VecDeque<(u64, T)>,
    /// Runs of consecutive results that arrived before the head, keyed by
    /// their first sequence number (always after `next`).
    early: BTreeMap<u64, VecDeque<(u64, T)>>,
    next: u64,
}

impl<T> ReorderWindow<T> {
    pub(crate) fn new() -> Self {
        ReorderWindow {
            arrivals: VecDeque::new(),
            early: BTreeMap::new(),
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

    /// The sequence number released next.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// The result for [`next`](Self::next), if it is done.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        // Inlined fast path, once per item: the head is the next arrival.
        if self
            .arrivals
            .front()
            .is_some_and(|(seq, _)| *seq == self.next)
        {
            return self.release_front();
        }
        self.pop_sorting()
    }

    fn release_front(&mut self) -> Option<T> {
        self.next += 1;
        self.arrivals.pop_front().map(|(_, value)| value)
    }

    /// [`pop`](Self::pop) when the front arrival is not the head: sets early
    /// runs aside until the head turns up, in the arrivals or as a run set
    /// aside before.
    #[cold]
    fn pop_sorting(&mut self) -> Option<T> {
        loop {
            if let Some(&(first, _)) = self.arrivals.front() {
                if first == self.next {
                    return self.release_front();
                }
                self.set_aside_front_run(first);
                continue;
            }
            // Every arrival is set aside: continue from the run at the head.
            let entry = self.early.first_entry()?;
            if *entry.key() != self.next {
                return None;
            }
            self.arrivals = entry.remove();
        }
    }

    /// Moves the run of consecutive results at the front of the arrivals
    /// (starting at `first`, after the head) to `early`.
    fn set_aside_front_run(&mut self, first: u64) {
        debug_assert!(first > self.next, "sequence number {first} released twice");
        let len = self
            .arrivals
            .iter()
            .zip(first..)
            .take_while(|((seq, _), want)| seq == want)
            .count();
        let run = if len == self.arrivals.len() {
            std::mem::take(&mut self.arrivals)
        } else {
            self.arrivals.drain(..len).collect()
        };
        let filed_twice = self.early.insert(first, run);
        debug_assert!(filed_twice.is_none(), "sequence number {first} filed twice");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::ReorderWindow;

    fn arrive<T>(w: &mut ReorderWindow<T>, items: impl IntoIterator<Item = (u64, T)>) {
        w.arrive(&mut items.into_iter().collect());
    }

    #[test]
    fn releases_in_sequence_order_only() {
        let mut w = ReorderWindow::new();
        arrive(&mut w, [(2, 'c')]);
        arrive(&mut w, [(1, 'b')]);
        assert_eq!(w.pop(), None);
        arrive(&mut w, [(0, 'a')]);
        assert_eq!(
            (w.pop(), w.pop(), w.pop(), w.pop()),
            (Some('a'), Some('b'), Some('c'), None)
        );
        arrive(&mut w, [(3, 'd')]);
        assert_eq!(w.pop(), Some('d'));
    }

    #[test]
    fn arrivals_are_released_in_sequence_order_only() {
        let mut w = ReorderWindow::new();
        let mut batch = VecDeque::from([(3, 'd'), (4, 'e'), (1, 'b')]);
        w.arrive(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(w.pop(), None);
        arrive(&mut w, [(2, 'c')]);
        arrive(&mut w, [(0, 'a'), (6, 'g')]);
        let popped: Vec<_> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(popped, ['a', 'b', 'c', 'd', 'e']);
        assert_eq!(w.next(), 5);
        arrive(&mut w, [(5, 'f')]);
        assert_eq!((w.pop(), w.pop(), w.pop()), (Some('f'), Some('g'), None));
    }

    #[test]
    fn an_early_run_waits_whole_until_the_head_reaches_it() {
        let mut w = ReorderWindow::new();
        // Two runs early, then the head run, in one arrival batch.
        arrive(&mut w, [(4, 4), (5, 5), (2, 2), (3, 3), (0, 0)]);
        assert_eq!((w.pop(), w.pop()), (Some(0), None));
        assert_eq!(w.next(), 1);
        arrive(&mut w, [(1, 1), (7, 7)]);
        let popped: Vec<_> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(popped, [1, 2, 3, 4, 5]);
        arrive(&mut w, [(6, 6), (8, 8)]);
        let popped: Vec<_> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(popped, [6, 7, 8]);
        assert_eq!(w.next(), 9);
    }

    /// Sequence numbers cut into runs, the runs shuffled and delivered in
    /// batches of several runs, popping in between.
    fn deliveries() -> impl Strategy<Value = (u64, Vec<(Vec<u64>, usize)>)> {
        (1..200_u64)
            .prop_flat_map(|n| (Just(n), proptest::collection::vec(1..20_u64, n as usize)))
            .prop_flat_map(|(n, cuts)| {
                let mut runs = Vec::new();
                let mut start = 0;
                for len in cuts {
                    if start >= n {
                        break;
                    }
                    let end = (start + len).min(n);
                    runs.push((start..end).collect::<Vec<u64>>());
                    start = end;
                }
                let count = runs.len();
                (
                    Just(n),
                    Just(runs).prop_shuffle(),
                    proptest::collection::vec(0..4_usize, count),
                )
            })
            .prop_map(|(n, runs, pops)| (n, runs.into_iter().zip(pops).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_item_is_released_once_in_order((n, runs) in deliveries()) {
            let mut w = ReorderWindow::new();
            let mut popped = Vec::new();
            let mut batch = VecDeque::new();
            for (i, (run, pops)) in runs.iter().enumerate() {
                batch.extend(run.iter().map(|&seq| (seq, seq)));
                // Deliver every other run together with the next one.
                if i % 2 == 1 || i + 1 == runs.len() {
                    w.arrive(&mut batch);
                    prop_assert!(batch.is_empty());
                }
                for _ in 0..*pops {
                    popped.extend(w.pop());
                }
            }
            popped.extend(std::iter::from_fn(|| w.pop()));
            prop_assert_eq!(popped, (0..n).collect::<Vec<_>>());
            prop_assert_eq!(w.next(), n);
        }
    }
}
