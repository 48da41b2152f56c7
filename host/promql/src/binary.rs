//! Binary operators: arithmetic, comparison (with and without `bool`) and set
//! operators between scalars and instant vectors, with `on`/`ignoring` and
//! `group_left`/`group_right` vector matching. Matching signatures and result label
//! sets are computed once per series (or pair of series); the per-step work checks
//! presence and computes values, reporting the same errors as Prometheus where a
//! step has ambiguous matches.

use crate::eval::{ABSENT, Evaluator, Grid, Series, Val, drop_name, duplicate_labelset, is_absent, merge_same_labels};
use crate::value::Error;
use crate::{Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn of(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic results lose the metric name; comparisons keep it.
    fn drops_name(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow)
    }

    /// `(value, keep)`: the value of `l op r`; for comparisons the left value and
    /// whether the comparison holds.
    #[inline]
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => unreachable!("set operators are not element-wise"),
        }
    }
}

/// How the two sides are matched.
struct Matching {
    /// `on(...)` (true) or `ignoring(...)`/none (false).
    on: bool,
    labels: Vec<String>,
    card: Card,
    /// `group_left(...)`/`group_right(...)` labels copied from the "one" side.
    include: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

impl Matching {
    fn of(b: &BinaryExpr, op: Op) -> Matching {
        let mut m = Matching {
            on: false,
            labels: Vec::new(),
            card: Card::OneToOne,
            include: Vec::new(),
        };
        if let Some(modifier) = &b.modifier {
            match &modifier.matching {
                Some(LabelModifier::Include(l)) => {
                    m.on = true;
                    m.labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => m.labels = l.labels.clone(),
                None => {}
            }
            match &modifier.card {
                VectorMatchCardinality::OneToOne => {}
                VectorMatchCardinality::ManyToOne(l) => {
                    m.card = Card::ManyToOne;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    m.card = Card::OneToMany;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::ManyToMany => m.card = Card::ManyToMany,
            }
        }
        if matches!(op, Op::And | Op::Or | Op::Unless) {
            m.card = Card::ManyToMany;
        }
        m
    }

    /// The labels two series must share to match.
    fn signature(&self, l: &Labels) -> Labels {
        let pairs = l
            .pairs()
            .iter()
            .filter(|(n, _)| {
                if self.on {
                    self.labels.iter().any(|m| **m == **n)
                } else {
                    &**n != METRIC_NAME && !self.labels.iter().any(|m| **m == **n)
                }
            })
            .cloned()
            .collect();
        Labels::from_pairs(pairs)
    }
}

pub(crate) fn binary(ev: &mut Evaluator, b: &BinaryExpr, grid: Grid) -> Result<Val, Error> {
    let op_name = b.op.to_string();
    let op = Op::of(&op_name).ok_or_else(|| Error::BadData(format!("unknown binary operator {op_name:?}")))?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, grid)?;
    let rhs = ev.eval(&b.rhs, grid)?;
    match (lhs, rhs) {
        (Val::Scalar(mut l), Val::Scalar(r)) => {
            for (a, b) in l.iter_mut().zip(&r) {
                let (v, keep) = op.apply(*a, *b);
                *a = if op.is_comparison() {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                };
            }
            Ok(Val::Scalar(l))
        }
        (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(op, v, &s, false, return_bool)?)),
        (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(op, v, &s, true, return_bool)?)),
        (Val::Vector(l), Val::Vector(r)) => {
            let m = Matching::of(b, op);
            let out = match op {
                Op::And | Op::Or | Op::Unless => set_op(op, &m, l, r, grid.len())?,
                _ => vector_vector(ev, op, &m, return_bool, l, r, grid.len())?,
            };
            Ok(Val::Vector(out))
        }
        _ => Err(Error::BadData(format!(
            "binary operator {op_name:?} is only allowed between scalars and instant vectors"
        ))),
    }
}

fn vector_scalar(
    op: Op,
    series: Vec<Series>,
    scalar: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Series>, Error> {
    let mut out = Vec::with_capacity(series.len());
    let relabel = op.drops_name() || return_bool;
    for mut s in series {
        let mut any = false;
        for (v, &sv) in s.vals.iter_mut().zip(scalar) {
            if is_absent(*v) {
                continue;
            }
            let (l, r) = if swap { (sv, *v) } else { (*v, sv) };
            let (mut value, mut keep) = op.apply(l, r);
            if op.is_comparison() {
                // The vector's own value is kept whichever side it is on.
                value = *v;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                *v = value;
                any = true;
            } else {
                *v = ABSENT;
            }
        }
        if any {
            if relabel {
                s.labels = drop_name(&s.labels);
            }
            out.push(s);
        }
    }
    if relabel { merge_same_labels(out) } else { Ok(out) }
}

/// Numbers each distinct signature; returns the id of every series.
fn signature_ids(m: &Matching, series: &[Series], ids: &mut HashMap<Labels, usize>) -> Vec<usize> {
    series
        .iter()
        .map(|s| {
            let sig = m.signature(&s.labels);
            let next = ids.len();
            *ids.entry(sig).or_insert(next)
        })
        .collect()
}

fn set_op(op: Op, m: &Matching, lhs: Vec<Series>, rhs: Vec<Series>, n: usize) -> Result<Vec<Series>, Error> {
    let mut ids = HashMap::new();
    let lsig = signature_ids(m, &lhs, &mut ids);
    let rsig = signature_ids(m, &rhs, &mut ids);
    // present[sig * n + i]: some series of that side with the signature has a value at i.
    let presence = |sigs: &[usize], side: &[Series]| {
        let mut p = vec![false; ids.len() * n];
        for (s, &sig) in side.iter().zip(sigs) {
            for (i, v) in s.vals.iter().enumerate() {
                if !is_absent(*v) {
                    p[sig * n + i] = true;
                }
            }
        }
        p
    };
    match op {
        Op::And | Op::Unless => {
            let rp = presence(&rsig, &rhs);
            let want = op == Op::And;
            let mut out = Vec::with_capacity(lhs.len());
            for (mut s, sig) in lhs.into_iter().zip(lsig) {
                let mut any = false;
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if is_absent(*v) {
                        continue;
                    }
                    if rp[sig * n + i] == want {
                        any = true;
                    } else {
                        *v = ABSENT;
                    }
                }
                if any {
                    out.push(s);
                }
            }
            Ok(out)
        }
        _ => {
            let lp = presence(&lsig, &lhs);
            let mut out = lhs;
            for (mut s, sig) in rhs.into_iter().zip(rsig) {
                let mut any = false;
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if is_absent(*v) {
                        continue;
                    }
                    if lp[sig * n + i] {
                        *v = ABSENT;
                    } else {
                        any = true;
                    }
                }
                if any {
                    out.push(s);
                }
            }
            merge_same_labels(out)
        }
    }
}

fn vector_vector(
    ev: &mut Evaluator,
    op: Op,
    m: &Matching,
    return_bool: bool,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    n: usize,
) -> Result<Vec<Series>, Error> {
    if m.card == Card::ManyToMany {
        return Err(Error::BadData("many-to-many only allowed for set operators".into()));
    }
    // The "many" side drives; with group_right the sides swap (values are swapped
    // back when computed).
    let swapped = m.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut ids = HashMap::new();
    let many_sig = signature_ids(m, &many, &mut ids);
    let one_sig = signature_ids(m, &one, &mut ids);
    let mut one_by_sig: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (j, &sig) in one_sig.iter().enumerate() {
        one_by_sig[sig].push(j);
    }
    // Steps at which the driving side has any sample: only there is a duplicate on
    // the "one" side an error (Prometheus short-circuits empty steps).
    let mut many_any = vec![false; n];
    for s in &many {
        for (i, v) in s.vals.iter().enumerate() {
            if !is_absent(*v) {
                many_any[i] = true;
            }
        }
    }
    for js in one_by_sig.iter().filter(|js| js.len() > 1) {
        for i in (0..n).filter(|&i| many_any[i]) {
            let mut present = js.iter().filter(|&&j| !is_absent(one[j].vals[i]));
            if let (Some(&a), Some(&b)) = (present.next(), present.next()) {
                let side = if swapped { "left" } else { "right" };
                return Err(Error::Execution(format!(
                    "found duplicate series for the match group {:?} on the {side} hand-side of the operation: [{:?}, {:?}];many-to-many matching not allowed: matching labels must be unique on one side",
                    m.signature(&one[a].labels),
                    one[b].labels,
                    one[a].labels
                )));
            }
        }
    }
    let mut out: Vec<Series> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    // For one-to-one matching: the step at which a signature last produced a result.
    let mut sig_emitted: Vec<Vec<bool>> = if m.card == Card::OneToOne {
        vec![Vec::new(); ids.len()]
    } else {
        Vec::new()
    };
    for (li, s) in many.iter().enumerate() {
        ev.check_often()?;
        let sig = many_sig[li];
        let candidates = &one_by_sig[sig];
        if candidates.is_empty() {
            continue;
        }
        for i in 0..n {
            let lv = s.vals[i];
            if is_absent(lv) {
                continue;
            }
            let Some(&rj) = candidates.iter().find(|&&j| !is_absent(one[j].vals[i])) else {
                continue;
            };
            let rv = one[rj].vals[i];
            let (a, b) = if swapped { (rv, lv) } else { (lv, rv) };
            let (mut value, keep) = op.apply(a, b);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            if m.card == Card::OneToOne {
                let e = &mut sig_emitted[sig];
                if e.is_empty() {
                    *e = vec![false; n];
                }
                if e[i] {
                    return Err(Error::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                e[i] = true;
            }
            let key = (li, if m.include.is_empty() { usize::MAX } else { rj });
            let oi = match pair_out.get(&key) {
                Some(&oi) => oi,
                None => {
                    let labels = result_labels(op, m, return_bool, &s.labels, &one[rj].labels);
                    let next = out.len();
                    let oi = *out_index.entry(labels.clone()).or_insert(next);
                    if oi == next {
                        out.push(Series {
                            labels,
                            vals: vec![ABSENT; n],
                        });
                    }
                    pair_out.insert(key, oi);
                    oi
                }
            };
            let slot = &mut out[oi].vals[i];
            if !is_absent(*slot) {
                return Err(if m.card == Card::OneToOne {
                    duplicate_labelset()
                } else {
                    Error::Execution("multiple matches for labels: grouping labels must ensure unique matches".into())
                });
            }
            *slot = value;
        }
    }
    ev.hold(out.len() * n)?;
    Ok(out)
}

/// The label set of a result: the "many" side's labels, without the name for
/// arithmetic (and `bool`), reduced to the matching labels for one-to-one `on`,
/// without the ignored labels for one-to-one `ignoring`, plus the `group_x` labels
/// copied from the "one" side.
fn result_labels(op: Op, m: &Matching, return_bool: bool, many: &Labels, one: &Labels) -> Labels {
    let mut pairs: Vec<(Arc<str>, Arc<str>)> = many.pairs().to_vec();
    if op.drops_name() || return_bool {
        pairs.retain(|(n, _)| &**n != METRIC_NAME);
    }
    if m.card == Card::OneToOne {
        if m.on {
            pairs.retain(|(n, _)| m.labels.iter().any(|l| **l == **n));
        } else {
            pairs.retain(|(n, _)| !m.labels.iter().any(|l| **l == **n));
        }
    }
    for name in &m.include {
        pairs.retain(|(n, _)| **n != **name);
        if let Some(v) = one.get(name) {
            pairs.push((name.as_str().into(), v.into()));
        }
    }
    if return_bool {
        pairs.retain(|(n, _)| &**n != METRIC_NAME);
    }
    Labels::from_pairs(pairs)
}
