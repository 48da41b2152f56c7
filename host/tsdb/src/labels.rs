//! Label sets: sorted `(name, value)` pairs including `__name__`, with interned
//! strings so thousands of series share one copy of `job`, `instance`, `cpu`, ...

use std::collections::HashSet;
use std::fmt;
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
