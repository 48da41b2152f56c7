//! In-memory inverted index of the head: label name → value → sorted series refs,
//! serving `=`, `!=`, `=~` and `!~` matchers without scanning every series.

use promql_parser::label::{MatchOp, Matcher};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub type SeriesRef = u64;

#[derive(Default)]
pub struct Postings {
    /// name → value → refs (ascending).
    by_label: HashMap<Arc<str>, BTreeMap<Arc<str>, Refs>>,
    /// Every live series (ascending): the universe for negative matchers.
    all: Vec<SeriesRef>,
}

/// The refs of one label value, ascending. Most values of a high-cardinality label (an
/// id, a path, a pod) belong to one series: that ref is kept inline, without the
/// allocation a one-element `Vec` costs (~32 bytes of heap a series).
#[derive(Debug)]
enum Refs {
    One(SeriesRef),
    Many(Vec<SeriesRef>),
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
                *self = Refs::Many(v);
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
    pub fn add(&mut self, r: SeriesRef, labels: &[(Arc<str>, Arc<str>)]) {
        for (n, v) in labels {
            let values = self.by_label.entry(n.clone()).or_default();
            match values.get_mut(v) {
                Some(refs) => refs.insert(r),
                None => {
                    values.insert(v.clone(), Refs::One(r));
                }
            }
        }
        insert_sorted(&mut self.all, r);
    }

    pub fn remove(&mut self, r: SeriesRef, labels: &[(Arc<str>, Arc<str>)]) {
        for (n, v) in labels {
            if let Some(values) = self.by_label.get_mut(n) {
                if values.get_mut(v).is_some_and(|refs| refs.remove(r)) {
                    values.remove(v);
                }
                if values.is_empty() {
                    self.by_label.remove(n);
                }
            }
        }
        remove_sorted(&mut self.all, r);
    }

    /// Refs of the series whose label `m.name` satisfies `m` (a missing label counts
    /// as the empty string, as in Prometheus).
    fn matching(&self, m: &Matcher) -> Vec<SeriesRef> {
        let values = self.by_label.get(m.name.as_str());
        let empty_matches = matcher_matches(m, "");
        let mut sets: Vec<&[SeriesRef]> = Vec::new();
        if let Some(values) = values {
            match &m.op {
                MatchOp::Equal => sets.extend(values.get(m.value.as_str()).map(Refs::as_slice)),
                _ => sets.extend(
                    values
                        .iter()
                        .filter(|(v, _)| matcher_matches(m, v))
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
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut result: Option<Vec<SeriesRef>> = None;
        // Cheap, selective matchers first: equality on a value.
        let mut order: Vec<&Matcher> = matchers.iter().collect();
        order.sort_by_key(|m| !matches!(m.op, MatchOp::Equal) || m.value.is_empty());
        for m in order {
            let refs = self.matching(m);
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

    pub fn label_names(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.by_label.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn label_values(&self, name: &str) -> Vec<Arc<str>> {
        self.by_label
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
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

    fn l(pairs: &[(&str, &str)]) -> Vec<(Arc<str>, Arc<str>)> {
        pairs.iter().map(|(n, v)| (Arc::from(*n), Arc::from(*v))).collect()
    }

    fn sel(p: &Postings, s: &str) -> Vec<SeriesRef> {
        let promql_parser::parser::Expr::VectorSelector(vs) = promql_parser::parser::parse(s).unwrap() else {
            panic!("not a selector: {s}")
        };
        let mut m = vs.matchers.matchers;
        if let Some(n) = vs.name {
            m.push(Matcher::new(MatchOp::Equal, "__name__", &n));
        }
        p.select(&m)
    }

    fn sample() -> Postings {
        let mut p = Postings::default();
        p.add(1, &l(&[("__name__", "cpu"), ("mode", "idle"), ("cpu", "0")]));
        p.add(2, &l(&[("__name__", "cpu"), ("mode", "user"), ("cpu", "0")]));
        p.add(3, &l(&[("__name__", "cpu"), ("mode", "idle"), ("cpu", "1")]));
        p.add(4, &l(&[("__name__", "up")]));
        p
    }

    #[test]
    fn all_matcher_kinds() {
        let p = sample();
        assert_eq!(sel(&p, r#"cpu{mode="idle"}"#), vec![1, 3]);
        assert_eq!(sel(&p, r#"cpu{mode!="idle"}"#), vec![2]);
        assert_eq!(sel(&p, r#"cpu{mode=~"id.*|us.*",cpu="0"}"#), vec![1, 2]);
        assert_eq!(sel(&p, r#"{__name__=~"cpu|up",mode!~"user"}"#), vec![1, 3, 4]);
        assert_eq!(
            sel(&p, r#"{__name__=~"cpu|up",mode=""}"#),
            vec![4],
            "missing label equals the empty string"
        );
        assert_eq!(sel(&p, r#"{mode!=""}"#), vec![1, 2, 3]);
        assert_eq!(sel(&p, r#"{__name__=~".+",mode=~".*"}"#), vec![1, 2, 3, 4]);
        assert_eq!(sel(&p, r#"nothing"#), Vec::<SeriesRef>::new());
    }

    #[test]
    fn a_value_goes_from_one_ref_to_many_and_back() {
        let mut p = Postings::default();
        let id = |i: &str| l(&[("__name__", "m"), ("id", i)]);
        p.add(5, &id("a"));
        assert!(matches!(p.by_label["id"]["a"], Refs::One(5)));
        p.add(5, &id("a"));
        assert_eq!(sel(&p, r#"m{id="a"}"#), vec![5], "adding a ref twice keeps one");
        p.add(3, &id("a"));
        p.add(9, &id("a"));
        assert_eq!(sel(&p, r#"m{id="a"}"#), vec![3, 5, 9]);
        p.remove(5, &id("a"));
        p.remove(9, &id("a"));
        assert!(matches!(p.by_label["id"]["a"], Refs::One(3)));
        assert_eq!(sel(&p, r#"m{id=~"a|b"}"#), vec![3]);
        p.remove(7, &id("a"));
        assert_eq!(
            sel(&p, r#"m{id="a"}"#),
            vec![3],
            "removing an absent ref changes nothing"
        );
        p.remove(3, &id("a"));
        assert!(p.label_values("id").is_empty(), "the value went with its last ref");
        assert_eq!(sel(&p, r#"m"#), Vec::<SeriesRef>::new());
    }

    #[test]
    fn removal_and_label_values() {
        let mut p = sample();
        p.remove(2, &l(&[("__name__", "cpu"), ("mode", "user"), ("cpu", "0")]));
        assert_eq!(sel(&p, r#"cpu"#), vec![1, 3]);
        let vals: Vec<String> = p.label_values("mode").iter().map(|s| s.to_string()).collect();
        assert_eq!(vals, ["idle"]);
        p.add(0, &l(&[("__name__", "cpu"), ("mode", "user")]));
        assert_eq!(
            sel(&p, r#"cpu"#),
            vec![0, 1, 3],
            "out-of-order insert keeps refs sorted"
        );
    }
}
