//! [`Slab`]: entries addressed by a stable index, reused once freed.

/// A vector of optional entries with a free list: inserting reuses a freed
/// index, so the indices handed out stay small and stable for an entry's life.
#[derive(Debug)]
pub(super) struct Slab<E> {
    entries: Vec<Option<E>>,
    free: Vec<usize>,
    len: usize,
}

impl<E> Slab<E> {
    pub(super) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn insert(&mut self, entry: E) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(entry);
                index
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        }
    }

    pub(super) fn remove(&mut self, index: usize) -> E {
        let entry = self.entries[index].take().expect("a live slab entry");
        self.free.push(index);
        self.len -= 1;
        entry
    }

    pub(super) fn get_mut(&mut self, index: usize) -> &mut E {
        self.entries[index].as_mut().expect("a live slab entry")
    }

    pub(super) fn get(&self, index: usize) -> &E {
        self.entries[index].as_ref().expect("a live slab entry")
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &E> {
        self.entries.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.entries.iter_mut().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_indices_are_reused_and_others_stay_put() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!(slab.remove(a), 'a');
        let c = slab.insert('c');
        assert_eq!(c, a);
        assert_eq!(*slab.get(b), 'b');
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.iter().copied().collect::<Vec<_>>(), ['c', 'b']);
    }
}
