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
///
/// The strings live back to back in one buffer (rewritten without the dropped ones
/// when they are half of it): a string costs its length plus 16 bytes of span, use
/// count and index, where an `Arc<str>` of its own cost ~60 (a 32-byte heap block at
/// least, its pointer and count).
#[derive(Default)]
pub(crate) struct Symbols {
    text: String,
    /// Where each id's string lies in `text`; `len` [`FREE_SYMBOL`]: a free id.
    spans: Vec<Span>,
    /// Label sets using each string.
    uses: Vec<u32>,
    free: Vec<u32>,
    /// Bytes of `text` that belong to no string any more.
    dead: usize,
    /// Ids by string hash.
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// `Span::len` of a free id.
const FREE_SYMBOL: u32 = u32::MAX;

/// Dead bytes tolerated before the strings are rewritten, whatever their size.
const MIN_DEAD_TEXT: usize = 256 * 1024;

impl Symbols {
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn str_at(text: &str, span: Span) -> Option<&str> {
        (span.len != FREE_SYMBOL).then(|| &text[span.start as usize..(span.start + span.len) as usize])
    }

    /// The id of `s`, if some label set uses it.
    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let (text, spans) = (&self.text, &self.spans);
        self.index
            .find(self.hash(s), |&id| Self::str_at(text, spans[id as usize]) == Some(s))
            .copied()
    }

    /// The id of `s`, counted as one more use (release it with [`Symbols::release`]).
    pub(crate) fn acquire(&mut self, s: &str) -> u32 {
        let id = match self.find(s) {
            Some(id) => id,
            None => {
                let span = Span {
                    start: u32::try_from(self.text.len()).expect("label strings beyond 4 GiB"),
                    len: s.len() as u32,
                };
                self.text.push_str(s);
                let id = match self.free.pop() {
                    Some(id) => {
                        self.spans[id as usize] = span;
                        id
                    }
                    None => {
                        self.spans.push(span);
                        self.uses.push(0);
                        (self.spans.len() - 1) as u32
                    }
                };
                let Symbols {
                    text,
                    spans,
                    index,
                    hasher,
                    ..
                } = self;
                index.insert_unique(hasher.hash_one(s), id, |&i| {
                    hasher.hash_one(Self::str_at(text, spans[i as usize]).unwrap_or_default())
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
        let span = self.spans[id as usize];
        let Some(s) = Self::str_at(&self.text, span) else {
            return;
        };
        if let Ok(e) = self.index.find_entry(self.hasher.hash_one(s), |&i| i == id) {
            e.remove();
        }
        self.spans[id as usize].len = FREE_SYMBOL;
        self.free.push(id);
        self.dead += span.len as usize;
        if self.dead > MIN_DEAD_TEXT && self.dead > self.text.len() / 2 {
            self.rewrite();
        }
    }

    /// Rewrites `text` with the strings in use only.
    fn rewrite(&mut self) {
        let mut text = String::with_capacity(self.text.len() - self.dead);
        for span in self.spans.iter_mut().filter(|s| s.len != FREE_SYMBOL) {
            let start = text.len() as u32;
            text.push_str(&self.text[span.start as usize..(span.start + span.len) as usize]);
            span.start = start;
        }
        self.text = text;
        self.dead = 0;
    }

    /// Bytes of the strings in use.
    pub(crate) fn text_bytes(&self) -> usize {
        self.text.len() - self.dead
    }

    /// Ids handed out so far (in use or free): every id is below this.
    pub(crate) fn slots(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn get(&self, id: u32) -> &str {
        Self::str_at(&self.text, self.spans[id as usize]).expect("a symbol in use")
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

    /// A label set's pairs, borrowed.
    pub(crate) fn iter<'a>(&'a self, l: &'a SymLabels) -> impl Iterator<Item = (&'a str, &'a str)> {
        l.0.chunks_exact(2).map(|p| (self.get(p[0]), self.get(p[1])))
    }

    /// A label set as [`Labels`]; `shared` holds the strings made so far, so the
    /// series of one query share their common names and values.
    pub(crate) fn labels(&self, l: &SymLabels, shared: &mut SharedStrings) -> Labels {
        let mut arc = |id: u32| shared.entry(id).or_insert_with(|| self.get(id).into()).clone();
        Labels::from_pairs(l.0.chunks_exact(2).map(|p| (arc(p[0]), arc(p[1]))).collect())
    }

    /// Hash of a label set's ids, for maps keyed by label set.
    pub(crate) fn hash_ids(&self, ids: &[u32]) -> u64 {
        self.hasher.hash_one(ids)
    }

    /// Heap bytes of the table.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * 8 + self.uses.capacity() * 4 + self.index.capacity() * 5
    }
}

fn sorted<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = pairs.to_vec();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// Strings of symbol ids made into [`Labels`] strings, per query.
pub(crate) type SharedStrings = std::collections::HashMap<u32, Arc<str>>;

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
        assert_eq!(s.labels(&c, &mut SharedStrings::default()).get("k"), Some("v"));
        s.release_set(&b);
        s.release_set(&c);
        assert!(["up", "job", "y", "k", "v"].iter().all(|x| s.find(x).is_none()));
    }

    #[test]
    fn strings_are_rewritten_once_half_are_dropped_and_stay_found() {
        let mut s = Symbols::default();
        let value = |i: usize| format!("a-long-enough-label-value-{i:06}");
        let sets: Vec<SymLabels> = (0..20_000)
            .map(|i| s.acquire_set(&[("__name__", "m"), ("id", &value(i))]))
            .collect();
        let before = s.text.len();
        for l in &sets[..15_000] {
            s.release_set(l);
        }
        assert!(
            s.text.len() < before / 2,
            "rewritten: {} of {before} bytes",
            s.text.len()
        );
        assert!(s.dead < MIN_DEAD_TEXT);
        let mut shared = SharedStrings::default();
        for (i, l) in sets.iter().enumerate().skip(15_000) {
            assert_eq!(s.labels(l, &mut shared).get("id"), Some(value(i).as_str()));
            assert_eq!(s.find(&value(i)), Some(l.ids()[3]));
        }
        assert_eq!(s.find(&value(0)), None);
        // Freed ids are used again, for new strings at the end of the text.
        let n = s.acquire_set(&[("__name__", "m"), ("id", "new")]);
        assert!(n.ids()[3] < 15_000 + 3);
        assert_eq!(s.iter(&n).collect::<Vec<_>>(), [("__name__", "m"), ("id", "new")]);
        assert!(
            Arc::ptr_eq(
                &s.labels(&sets[15_000], &mut shared).pairs()[0].0,
                &s.labels(&n, &mut shared).pairs()[0].0
            ),
            "one query's series share their strings"
        );
    }
}
