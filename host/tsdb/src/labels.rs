//! Label sets: sorted `(name, value)` pairs including `__name__`, with interned
//! strings so thousands of series share one copy of `job`, `instance`, `cpu`, ...

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

pub const METRIC_NAME: &str = "__name__";

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// Builds a label set from pairs (sorted here; names must be unique).
    pub fn from_pairs(mut pairs: Vec<(Arc<str>, Arc<str>)>) -> Self {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Labels(pairs.into())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }

    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    pub fn pairs(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (&**n, &**v))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric_name())?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != METRIC_NAME) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Deduplicates label strings.
#[derive(Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.0.insert(a.clone());
        a
    }

    /// Drops strings no label set uses any more.
    pub fn sweep(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// The head's label strings, each held once and named by a `u32`, counted by the label
/// sets that use it and dropped with the last one. A series keeps its labels as
/// [`SymLabels`]: 8 bytes a pair instead of 32 for two `Arc<str>`.
#[derive(Default)]
pub(crate) struct Symbols {
    strings: Vec<Option<Arc<str>>>,
    /// Label sets using each string.
    uses: Vec<u32>,
    free: Vec<u32>,
    /// Ids by string hash.
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Symbols {
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The id of `s`, if some label set uses it.
    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let strings = &self.strings;
        self.index
            .find(self.hash(s), |&id| strings[id as usize].as_deref() == Some(s))
            .copied()
    }

    /// The id of `s`, counted as one more use (release it with [`Symbols::release`]).
    pub(crate) fn acquire(&mut self, s: &str) -> u32 {
        let id = match self.find(s) {
            Some(id) => id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => {
                        self.strings[id as usize] = Some(s.into());
                        id
                    }
                    None => {
                        self.strings.push(Some(s.into()));
                        self.uses.push(0);
                        (self.strings.len() - 1) as u32
                    }
                };
                let Symbols {
                    strings, index, hasher, ..
                } = self;
                index.insert_unique(hasher.hash_one(s), id, |&i| {
                    hasher.hash_one(strings[i as usize].as_deref().unwrap_or_default())
                });
                id
            }
        };
        self.uses[id as usize] += 1;
        id
    }

    /// One use of `id` less; the string goes with its last use.
    pub(crate) fn release(&mut self, id: u32) {
        let uses = &mut self.uses[id as usize];
        *uses -= 1;
        if *uses > 0 {
            return;
        }
        if let Some(s) = self.strings[id as usize].take() {
            if let Ok(e) = self.index.find_entry(self.hash(&s), |&i| i == id) {
                e.remove();
            }
            self.free.push(id);
        }
    }

    /// Ids handed out so far (in use or free): every id is below this.
    pub(crate) fn slots(&self) -> usize {
        self.strings.len()
    }

    pub(crate) fn get(&self, id: u32) -> &Arc<str> {
        self.strings[id as usize].as_ref().expect("a symbol in use")
    }

    /// The ids of `pairs` (sorted by name, as a label set keeps them) without counting a
    /// use; `None` when a string is unknown, so no label set has all of them.
    pub(crate) fn find_set(&self, pairs: &[(&str, &str)]) -> Option<Vec<u32>> {
        let mut ids = Vec::with_capacity(pairs.len() * 2);
        for (n, v) in sorted(pairs) {
            ids.push(self.find(n)?);
            ids.push(self.find(v)?);
        }
        Some(ids)
    }

    /// [`Symbols::find_set`], acquiring every string.
    pub(crate) fn acquire_set(&mut self, pairs: &[(&str, &str)]) -> SymLabels {
        let mut ids = Vec::with_capacity(pairs.len() * 2);
        for (n, v) in sorted(pairs) {
            ids.push(self.acquire(n));
            ids.push(self.acquire(v));
        }
        SymLabels(ids.into_boxed_slice())
    }

    pub(crate) fn release_set(&mut self, l: &SymLabels) {
        for &id in l.ids() {
            self.release(id);
        }
    }

    /// A label set's pairs as shared strings.
    pub(crate) fn pairs(&self, l: &SymLabels) -> Vec<(Arc<str>, Arc<str>)> {
        l.0.chunks_exact(2)
            .map(|p| (self.get(p[0]).clone(), self.get(p[1]).clone()))
            .collect()
    }

    /// A label set's pairs, borrowed.
    pub(crate) fn iter<'a>(&'a self, l: &'a SymLabels) -> impl Iterator<Item = (&'a str, &'a str)> {
        l.0.chunks_exact(2).map(|p| (&**self.get(p[0]), &**self.get(p[1])))
    }

    pub(crate) fn labels(&self, l: &SymLabels) -> Labels {
        Labels::from_pairs(self.pairs(l))
    }

    /// Hash of a label set's ids, for maps keyed by label set.
    pub(crate) fn hash_ids(&self, ids: &[u32]) -> u64 {
        self.hasher.hash_one(ids)
    }

    /// Heap bytes of the table (strings at their length plus a 16-byte header).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.strings.capacity() * 16
            + self.uses.capacity() * 4
            + self.index.capacity() * 5
            + self.strings.iter().flatten().map(|s| s.len() + 16).sum::<usize>()
    }
}

fn sorted<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = pairs.to_vec();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// A label set in the head: `(name, value)` symbol ids, flattened, sorted by name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SymLabels(Box<[u32]>);

impl SymLabels {
    pub(crate) fn ids(&self) -> &[u32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_shared_counted_and_dropped_with_their_last_use() {
        let mut s = Symbols::default();
        let a = s.acquire_set(&[("job", "x"), ("__name__", "up")]);
        let b = s.acquire_set(&[("__name__", "up"), ("job", "y")]);
        // Sorted by name whatever the order given; `__name__`, `up` and `job` are shared.
        assert_eq!(a.ids()[..3], b.ids()[..3]);
        assert_eq!(s.iter(&a).collect::<Vec<_>>(), [("__name__", "up"), ("job", "x")]);
        assert_eq!(s.find_set(&[("job", "y"), ("__name__", "up")]), Some(b.ids().to_vec()));
        assert_eq!(s.find_set(&[("job", "z"), ("__name__", "up")]), None);
        s.release_set(&a);
        assert_eq!(s.find("x"), None, "x had one use");
        assert!(s.find("up").is_some() && s.find("job").is_some(), "still used by b");
        let c = s.acquire_set(&[("k", "v")]);
        assert!(c.ids().contains(&a.ids()[3]), "the freed id is used again");
        assert_eq!(s.labels(&c).get("k"), Some("v"));
        s.release_set(&b);
        s.release_set(&c);
        assert!(["up", "job", "y", "k", "v"].iter().all(|x| s.find(x).is_none()));
    }
}
