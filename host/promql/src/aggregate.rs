//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...) with `by` and
//! `without`, evaluated over the whole grid: every input series is assigned to its
//! group once, then values are folded series by series (in input order, so the
//! floating-point operations happen in the same order as in Prometheus).

use crate::eval::{ABSENT, Evaluator, Grid, Series, Val, is_absent, unparen};
use crate::functions;
use crate::value::Error;
use crate::{Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

fn op_of(name: &str) -> Option<Op> {
    Some(match name {
        "sum" => Op::Sum,
        "avg" => Op::Avg,
        "count" => Op::Count,
        "group" => Op::Group,
        "min" => Op::Min,
        "max" => Op::Max,
        "stddev" => Op::Stddev,
        "stdvar" => Op::Stdvar,
        "topk" => Op::Topk,
        "bottomk" => Op::Bottomk,
        "quantile" => Op::Quantile,
        "count_values" => Op::CountValues,
        _ => return None,
    })
}

/// How series are grouped.
struct Grouping {
    without: bool,
    /// Sorted label names.
    names: Vec<String>,
}

impl Grouping {
    fn of(m: &Option<LabelModifier>) -> Grouping {
        let (without, names) = match m {
            None => (false, Vec::new()),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        };
        let mut names = names;
        names.sort();
        names.dedup();
        Grouping { without, names }
    }

    /// The labels of the group `l` belongs to (which identify the group).
    fn group_labels(&self, l: &Labels) -> Labels {
        let pairs: Vec<(Arc<str>, Arc<str>)> = if self.without {
            l.pairs()
                .iter()
                .filter(|(n, _)| &**n != METRIC_NAME && !self.names.iter().any(|g| **g == **n))
                .cloned()
                .collect()
        } else {
            l.pairs()
                .iter()
                .filter(|(n, _)| self.names.iter().any(|g| **g == **n))
                .cloned()
                .collect()
        };
        Labels::from_pairs(pairs)
    }
}

pub(crate) fn aggregate(ev: &mut Evaluator, a: &AggregateExpr, grid: Grid) -> Result<Val, Error> {
    let name = a.op.to_string();
    let op = op_of(&name).ok_or_else(|| Error::BadData(format!("unknown aggregation {name:?}")))?;
    let grouping = Grouping::of(&a.modifier);
    let n = grid.len();
    // The parameter is evaluated before the vector, as in Prometheus.
    let mut param: Vec<f64> = Vec::new();
    let mut label_param = String::new();
    if let Some(p) = &a.param {
        match unparen(p) {
            Expr::StringLiteral(s) if op == Op::CountValues => label_param = s.val.clone(),
            other if op != Op::CountValues => param = ev.eval_scalar(other, grid)?,
            _ => return Err(Error::BadData(format!("expected a string parameter for {name}"))),
        }
    }
    let input = ev.eval_vector(&a.expr, grid)?;
    let out = match op {
        Op::Topk | Op::Bottomk => top_bottom(ev, op, &param, &grouping, input, n)?,
        Op::CountValues => count_values(ev, &label_param, &grouping, input, n)?,
        _ => fold(ev, op, &param, &grouping, input, n)?,
    };
    Ok(Val::Vector(out))
}

/// Assigns each series to a group; groups are numbered in order of first member.
fn assign_groups(grouping: &Grouping, input: &[Series]) -> (Vec<Labels>, Vec<usize>) {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Labels> = Vec::new();
    let mut member_of = Vec::with_capacity(input.len());
    for s in input {
        let g = grouping.group_labels(&s.labels);
        let id = *index.entry(g.clone()).or_insert_with(|| {
            groups.push(g);
            groups.len() - 1
        });
        member_of.push(id);
    }
    (groups, member_of)
}

/// The value-folding aggregations: sum, avg, count, group, min, max, stddev,
/// stdvar, quantile.
fn fold(
    ev: &mut Evaluator,
    op: Op,
    param: &[f64],
    grouping: &Grouping,
    input: Vec<Series>,
    n: usize,
) -> Result<Vec<Series>, Error> {
    let (groups, member_of) = assign_groups(grouping, &input);
    let g_count = groups.len();
    ev.hold(g_count * n)?;
    if op == Op::Quantile {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); g_count];
        for (si, g) in member_of.iter().enumerate() {
            members[*g].push(si);
        }
        let mut out = Vec::with_capacity(g_count);
        let mut buf = Vec::new();
        for (g, labels) in groups.into_iter().enumerate() {
            let mut vals = vec![ABSENT; n];
            for (i, slot) in vals.iter_mut().enumerate() {
                buf.clear();
                buf.extend(
                    members[g]
                        .iter()
                        .map(|&si| input[si].vals[i])
                        .filter(|v| !is_absent(*v)),
                );
                if !buf.is_empty() {
                    *slot = functions::quantile(param[i], &mut buf);
                }
            }
            out.push(Series { labels, vals });
        }
        return Ok(out);
    }
    // Per group and step: value, mean and count (0 = no member present yet).
    let mut value = vec![0.0f64; g_count * n];
    let mut mean = vec![0.0f64; g_count * n];
    let mut count = vec![0u32; g_count * n];
    for (si, s) in input.iter().enumerate() {
        ev.check_often()?;
        let base = member_of[si] * n;
        let value = &mut value[base..base + n];
        let mean = &mut mean[base..base + n];
        let count = &mut count[base..base + n];
        for (i, &v) in s.vals.iter().enumerate() {
            if is_absent(v) {
                continue;
            }
            if count[i] == 0 {
                count[i] = 1;
                value[i] = match op {
                    Op::Stddev | Op::Stdvar => 0.0,
                    Op::Group => 1.0,
                    _ => v,
                };
                mean[i] = v;
                continue;
            }
            match op {
                Op::Sum => value[i] += v,
                Op::Avg => {
                    count[i] += 1;
                    let c = count[i] as f64;
                    let m = mean[i];
                    if m.is_infinite() {
                        if v.is_infinite() && (m > 0.0) == (v > 0.0) {
                            continue;
                        }
                        if !v.is_infinite() && !v.is_nan() {
                            continue;
                        }
                    }
                    mean[i] = m + (v / c - m / c);
                }
                Op::Count => count[i] += 1,
                Op::Group => {}
                Op::Max => {
                    if value[i] < v || value[i].is_nan() {
                        value[i] = v;
                    }
                }
                Op::Min => {
                    if value[i] > v || value[i].is_nan() {
                        value[i] = v;
                    }
                }
                Op::Stddev | Op::Stdvar => {
                    count[i] += 1;
                    let delta = v - mean[i];
                    mean[i] += delta / count[i] as f64;
                    value[i] += delta * (v - mean[i]);
                }
                Op::Quantile | Op::Topk | Op::Bottomk | Op::CountValues => unreachable!("handled elsewhere"),
            }
        }
    }
    let mut out = Vec::with_capacity(g_count);
    for (g, labels) in groups.into_iter().enumerate() {
        let base = g * n;
        let vals = (0..n)
            .map(|i| {
                let c = count[base + i];
                if c == 0 {
                    return ABSENT;
                }
                match op {
                    Op::Avg => mean[base + i],
                    Op::Count => c as f64,
                    Op::Stdvar => value[base + i] / c as f64,
                    Op::Stddev => (value[base + i] / c as f64).sqrt(),
                    _ => value[base + i],
                }
            })
            .collect();
        out.push(Series { labels, vals });
    }
    Ok(out)
}

/// topk/bottomk: per group and step, the k largest (smallest) members, kept with
/// their own labels. The selection replays Prometheus's heap so ties resolve alike.
fn top_bottom(
    ev: &mut Evaluator,
    op: Op,
    param: &[f64],
    grouping: &Grouping,
    input: Vec<Series>,
    n: usize,
) -> Result<Vec<Series>, Error> {
    let (groups, member_of) = assign_groups(grouping, &input);
    let bottom = op == Op::Bottomk;
    let mut chosen: Vec<Vec<f64>> = vec![Vec::new(); input.len()];
    // For instant queries, the output order: group by group, best first.
    let mut order: Vec<usize> = Vec::new();
    let mut heaps: Vec<Vec<(f64, usize)>> = vec![Vec::new(); groups.len()];
    let mut group_order: Vec<usize> = Vec::new();
    for i in 0..n {
        ev.check_often()?;
        let f = param[i];
        if !(f <= i64::MAX as f64 && f >= i64::MIN as f64) {
            return Err(Error::Execution(format!(
                "Scalar value {} overflows int64",
                go_float(f)
            )));
        }
        let k = f as i64;
        if k < 1 {
            continue;
        }
        let k = k as usize;
        heaps.iter_mut().for_each(Vec::clear);
        group_order.clear();
        for (si, s) in input.iter().enumerate() {
            let v = s.vals[i];
            if is_absent(v) {
                continue;
            }
            let h = &mut heaps[member_of[si]];
            if h.is_empty() {
                group_order.push(member_of[si]);
                h.push((v, si));
                continue;
            }
            let top = h[0].0;
            let better = if bottom { top > v } else { top < v };
            if h.len() < k || better || top.is_nan() {
                if h.len() == k {
                    if k == 1 {
                        h[0] = (v, si);
                        continue;
                    }
                    heap_pop(h, bottom);
                }
                h.push((v, si));
                let last = h.len() - 1;
                heap_up(h, last, bottom);
            }
        }
        for &g in &group_order {
            let h = &mut heaps[g];
            // Best first: descending for topk, ascending for bottomk, NaN last.
            h.sort_by(|a, b| {
                let (x, y) = (a.0, b.0);
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if bottom => x.partial_cmp(&y).unwrap(),
                    _ => y.partial_cmp(&x).unwrap(),
                }
            });
            for &(v, si) in h.iter() {
                if chosen[si].is_empty() {
                    chosen[si] = vec![ABSENT; n];
                    order.push(si);
                }
                chosen[si][i] = v;
            }
        }
    }
    if n > 1 {
        order.sort_unstable();
    }
    let mut input: Vec<Option<Series>> = input.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|si| Series {
            labels: input[si].take().expect("chosen once").labels,
            vals: std::mem::take(&mut chosen[si]),
        })
        .collect())
}

/// Go's container/heap ordering of Prometheus's value heaps: NaN sorts first.
fn heap_less(h: &[(f64, usize)], i: usize, j: usize, bottom: bool) -> bool {
    if h[i].0.is_nan() {
        return true;
    }
    if bottom { h[i].0 > h[j].0 } else { h[i].0 < h[j].0 }
}

fn heap_up(h: &mut [(f64, usize)], mut j: usize, bottom: bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !heap_less(h, j, i, bottom) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [(f64, usize)], mut i: usize, n: usize, bottom: bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && heap_less(h, j2, j1, bottom) {
            j = j2;
        }
        if !heap_less(h, j, i, bottom) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_pop(h: &mut Vec<(f64, usize)>, bottom: bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, bottom);
    h.pop();
}

/// count_values: per step, the number of series per (group, value), the value
/// written into `label` formatted like Go's `FormatFloat(v, 'f', -1, 64)`.
fn count_values(
    ev: &mut Evaluator,
    label: &str,
    grouping: &Grouping,
    input: Vec<Series>,
    n: usize,
) -> Result<Vec<Series>, Error> {
    if !functions::valid_label_name(label) {
        return Err(Error::Execution(format!("invalid label name {label:?}")));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    // With `by`, the value label is one of the grouping labels.
    let mut names = grouping.names.clone();
    if !grouping.without && !names.iter().any(|g| g == label) {
        names.push(label.to_string());
        names.sort();
    }
    let g = Grouping {
        without: grouping.without,
        names,
    };
    for s in &input {
        ev.check_often()?;
        for (i, &v) in s.vals.iter().enumerate() {
            if is_absent(v) {
                continue;
            }
            let mut pairs: Vec<(Arc<str>, Arc<str>)> = s
                .labels
                .pairs()
                .iter()
                .filter(|(n, _)| &**n != label)
                .cloned()
                .collect();
            pairs.push((label.into(), go_float(v).into()));
            let labels = g.group_labels(&Labels::from_pairs(pairs));
            let idx = match index.get(&labels) {
                Some(&idx) => idx,
                None => {
                    index.insert(labels.clone(), out.len());
                    out.push(Series {
                        labels,
                        vals: vec![ABSENT; n],
                    });
                    out.len() - 1
                }
            };
            let slot = &mut out[idx].vals[i];
            *slot = if is_absent(*slot) { 1.0 } else { *slot + 1.0 };
        }
    }
    ev.hold(out.len() * n)?;
    Ok(out)
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, no exponent.
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
