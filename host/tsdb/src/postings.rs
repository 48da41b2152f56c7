//! In-memory inverted index of the head: label name → value → sorted series refs,
//! serving `=`, `!=`, `=~` and `!~` matchers without scanning every series.

use crate::labels::Symbols;
use promql_parser::label::{MatchOp, Matcher};
use std::sync::Arc;

pub type SeriesRef = u64;

/// Label names and values are the head's symbol ids ([`Symbols`]): a value's entry
/// costs 24 bytes in a hash table, where a `BTreeMap` keyed by `Arc<str>` cost ~60 —
/// and a high-cardinality label (an id, a path) has one per series.
#[derive(Default)]
pub struct Postings {
    /// name → value → refs (ascending).
    by_label: hashbrown::HashMap<u32, hashbrown::HashMap<u32, Refs>>,
    /// Every live series (ascending): the universe for negative matchers.
    all: Vec<SeriesRef>,
}

/// The refs of one label value, ascending. Most values of a high-cardinality label (an
/// id, a path, a pod) belong to one series: that ref is kept inline, without the
/// allocation a one-element `Vec` costs (~32 bytes of heap a series).
// The box keeps the enum at 16 bytes, the size of a table entry's value.
#[allow(clippy::box_collection)]
#[derive(Debug)]
enum Refs {
    One(SeriesRef),
    Many(Box<Vec<SeriesRef>>),
}

impl Refs {
    fn as_slice(&self) -> &[SeriesRef] {
        match self {
            Refs::One(r) => std::slice::from_ref(r),
            Refs::Many(v) => v,
        }
    }

    fn insert(&mut self, r: SeriesRef) {
        match self {
            Refs::One(x) if *x == r => {}
            Refs::One(x) => {
                let mut v = vec![*x];
                insert_sorted(&mut v, r);
                *self = Refs::Many(Box::new(v));
            }
            Refs::Many(v) => insert_sorted(v, r),
        }
    }

    /// Removes `r`; whether no ref is left.
    fn remove(&mut self, r: SeriesRef) -> bool {
        match self {
            Refs::One(x) => *x == r,
            Refs::Many(v) => {
                remove_sorted(v, r);
                match v[..] {
                    [] => true,
                    [one] => {
                        *self = Refs::One(one);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

fn insert_sorted(v: &mut Vec<SeriesRef>, r: SeriesRef) {
    match v.last() {
        Some(&last) if last < r => v.push(r),
        None => v.push(r),
        _ => {
            if let Err(i) = v.binary_search(&r) {
                v.insert(i, r);
            }
        }
    }
}

fn remove_sorted(v: &mut Vec<SeriesRef>, r: SeriesRef) {
    if let Ok(i) = v.binary_search(&r) {
        v.remove(i);
    }
}

impl Postings {
    /// Adds series `r` with label set `ids` (`(name, value)` symbol ids, flattened).
    pub(crate) fn add(&mut self, r: SeriesRef, ids: &[u32]) {
        for p in ids.chunks_exact(2) {
            let values = self.by_label.entry(p[0]).or_default();
            match values.get_mut(&p[1]) {
                Some(refs) => refs.insert(r),
                None => {
                    values.insert(p[1], Refs::One(r));
                }
            }
        }
        insert_sorted(&mut self.all, r);
    }

    pub(crate) fn remove(&mut self, r: SeriesRef, ids: &[u32]) {
        for p in ids.chunks_exact(2) {
            if let Some(values) = self.by_label.get_mut(&p[0]) {
                if values.get_mut(&p[1]).is_some_and(|refs| refs.remove(r)) {
                    values.remove(&p[1]);
                }
                if values.is_empty() {
                    self.by_label.remove(&p[0]);
                }
            }
        }
        remove_sorted(&mut self.all, r);
    }

    /// Refs of the series whose label `m.name` satisfies `m` (a missing label counts
    /// as the empty string, as in Prometheus).
    fn matching(&self, m: &Matcher, symbols: &Symbols) -> Vec<SeriesRef> {
        let values = symbols.find(&m.name).and_then(|n| self.by_label.get(&n));
        let empty_matches = matcher_matches(m, "");
        let mut sets: Vec<&[SeriesRef]> = Vec::new();
        if let Some(values) = values {
            match &m.op {
                MatchOp::Equal => sets.extend(symbols.find(&m.value).and_then(|v| values.get(&v)).map(Refs::as_slice)),
                _ => sets.extend(
                    values
                        .iter()
                        .filter(|(v, _)| matcher_matches(m, symbols.get(**v)))
                        .map(|(_, refs)| refs.as_slice()),
                ),
            }
        }
        let mut out = union(&sets);
        if empty_matches {
            // Series without the label match too: all minus those that have it.
            let with_label: Vec<&[SeriesRef]> = values
                .map(|v| v.values().map(Refs::as_slice).collect())
                .unwrap_or_default();
            let without = difference(&self.all, &union(&with_label));
            out = union(&[&out, &without]);
        }
        out
    }

    /// Refs matching every matcher, ascending.
    pub(crate) fn select(&self, matchers: &[Matcher], symbols: &Symbols) -> Vec<SeriesRef> {
        let mut result: Option<Vec<SeriesRef>> = None;
        // Cheap, selective matchers first: equality on a value.
        let mut order: Vec<&Matcher> = matchers.iter().collect();
        order.sort_by_key(|m| !matches!(m.op, MatchOp::Equal) || m.value.is_empty());
        for m in order {
            let refs = self.matching(m, symbols);
            result = Some(match result {
                None => refs,
                Some(prev) => intersect(&prev, &refs),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                break;
            }
        }
        result.unwrap_or_else(|| self.all.clone())
    }

    /// Label names in use, sorted.
    pub(crate) fn label_names(&self, symbols: &Symbols) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.by_label.keys().map(|n| symbols.get(*n).into()).collect();
        v.sort();
        v
    }

    /// Values of label `name` in use, sorted.
    pub(crate) fn label_values(&self, name: &str, symbols: &Symbols) -> Vec<Arc<str>> {
        let Some(values) = symbols.find(name).and_then(|n| self.by_label.get(&n)) else {
            return Vec::new();
        };
        let mut v: Vec<Arc<str>> = values.keys().map(|v| symbols.get(*v).into()).collect();
        v.sort();
        v
    }
}

pub fn matcher_matches(m: &Matcher, value: &str) -> bool {
    match &m.op {
        MatchOp::Equal => m.value == value,
        MatchOp::NotEqual => m.value != value,
        MatchOp::Re(re) => re.is_match(value),
        MatchOp::NotRe(re) => !re.is_match(value),
    }
}

fn union(sets: &[&[SeriesRef]]) -> Vec<SeriesRef> {
    match sets {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut v: Vec<SeriesRef> = sets.iter().flat_map(|s| s.iter().copied()).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
    }
}

fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn difference(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::SymLabels;

    #[derive(Default)]
    struct Index {
        p: Postings,
        symbols: Symbols,
        sets: Vec<(SeriesRef, SymLabels)>,
    }

    impl Index {
        fn add(&mut self, r: SeriesRef, pairs: &[(&str, &str)]) {
            let l = self.symbols.acquire_set(pairs);
            self.p.add(r, l.ids());
            self.sets.push((r, l));
        }

        fn remove(&mut self, r: SeriesRef) {
            if let Some(i) = self.sets.iter().position(|(x, _)| *x == r) {
                let (_, l) = self.sets.remove(i);
                self.p.remove(r, l.ids());
                self.symbols.release_set(&l);
            }
        }

        fn sel(&self, s: &str) -> Vec<SeriesRef> {
            let promql_parser::parser::Expr::VectorSelector(vs) = promql_parser::parser::parse(s).unwrap() else {
                panic!("not a selector: {s}")
            };
            let mut m = vs.matchers.matchers;
            if let Some(n) = vs.name {
                m.push(Matcher::new(MatchOp::Equal, "__name__", &n));
            }
            self.p.select(&m, &self.symbols)
        }

        fn values(&self, name: &str) -> Vec<String> {
            self.p
                .label_values(name, &self.symbols)
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
    }

    fn sample() -> Index {
        let mut p = Index::default();
        p.add(1, &[("__name__", "cpu"), ("mode", "idle"), ("cpu", "0")]);
        p.add(2, &[("__name__", "cpu"), ("mode", "user"), ("cpu", "0")]);
        p.add(3, &[("__name__", "cpu"), ("mode", "idle"), ("cpu", "1")]);
        p.add(4, &[("__name__", "up")]);
        p
    }

    #[test]
    fn all_matcher_kinds() {
        let p = sample();
        assert_eq!(p.sel(r#"cpu{mode="idle"}"#), vec![1, 3]);
        assert_eq!(p.sel(r#"cpu{mode!="idle"}"#), vec![2]);
        assert_eq!(p.sel(r#"cpu{mode=~"id.*|us.*",cpu="0"}"#), vec![1, 2]);
        assert_eq!(p.sel(r#"{__name__=~"cpu|up",mode!~"user"}"#), vec![1, 3, 4]);
        assert_eq!(
            p.sel(r#"{__name__=~"cpu|up",mode=""}"#),
            vec![4],
            "missing label equals the empty string"
        );
        assert_eq!(p.sel(r#"{mode!=""}"#), vec![1, 2, 3]);
        assert_eq!(p.sel(r#"{__name__=~".+",mode=~".*"}"#), vec![1, 2, 3, 4]);
        assert_eq!(p.sel(r#"nothing"#), Vec::<SeriesRef>::new());
        assert_eq!(p.sel(r#"cpu{nolabel="x"}"#), Vec::<SeriesRef>::new());
        let names: Vec<String> = p.p.label_names(&p.symbols).iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["__name__", "cpu", "mode"]);
        assert_eq!(p.values("__name__"), ["cpu", "up"], "sorted");
    }

    #[test]
    fn a_value_goes_from_one_ref_to_many_and_back() {
        let mut p = Index::default();
        let id = [("__name__", "m"), ("id", "a")];
        let a = |p: &Index| {
            let n = p.symbols.find("id").unwrap();
            let v = p.symbols.find("a").unwrap();
            p.p.by_label[&n][&v].as_slice().to_vec()
        };
        p.add(5, &id);
        assert!(matches!(
            p.p.by_label.values().next().unwrap().values().next(),
            Some(Refs::One(5))
        ));
        p.p.add(5, p.sets[0].1.ids());
        assert_eq!(p.sel(r#"m{id="a"}"#), vec![5], "adding a ref twice keeps one");
        p.add(3, &id);
        p.add(9, &id);
        assert_eq!(p.sel(r#"m{id="a"}"#), vec![3, 5, 9]);
        p.remove(5);
        p.remove(9);
        assert_eq!(a(&p), vec![3]);
        assert_eq!(p.sel(r#"m{id=~"a|b"}"#), vec![3]);
        p.p.remove(7, p.sets[0].1.ids());
        assert_eq!(p.sel(r#"m{id="a"}"#), vec![3], "removing an absent ref changes nothing");
        p.remove(3);
        assert!(p.values("id").is_empty(), "the value went with its last ref");
        assert_eq!(p.sel(r#"m"#), Vec::<SeriesRef>::new());
    }

    #[test]
    fn removal_and_label_values() {
        let mut p = sample();
        p.remove(2);
        assert_eq!(p.sel(r#"cpu"#), vec![1, 3]);
        assert_eq!(p.values("mode"), ["idle"]);
        p.add(0, &[("__name__", "cpu"), ("mode", "user")]);
        assert_eq!(p.sel(r#"cpu"#), vec![0, 1, 3], "out-of-order insert keeps refs sorted");
        assert_eq!(p.values("mode"), ["idle", "user"]);
    }
}
