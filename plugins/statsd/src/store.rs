//! The exported state: metric families and their series, with statsd_exporter's
//! name-conflict rules, per-series TTL, the series limit, and the emission of
//! everything into a collection.

use crate::mapping::SummaryOptions;
use crate::summary::Summary;
use sonde_plugin_sdk::{Collection, Kind as SdkKind};
use std::collections::HashMap;
use std::sync::Arc;

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }

    fn sdk(self) -> SdkKind {
        match self {
            Kind::Counter => SdkKind::Counter,
            Kind::Gauge => SdkKind::Gauge,
            Kind::Histogram => SdkKind::Histogram,
            Kind::Summary => SdkKind::Summary,
        }
    }

    pub fn from_u8(b: u8) -> Option<Kind> {
        [Kind::Counter, Kind::Gauge, Kind::Histogram, Kind::Summary]
            .get(b as usize)
            .copied()
    }
}

pub struct Family {
    pub name: Box<str>,
    pub kind: Kind,
    pub help: Box<str>,
    /// Histogram bounds (statsd_exporter fixes them when the family is created).
    pub buckets: Arc<[f64]>,
    pub summary: Arc<SummaryOptions>,
    /// `le` / `quantile` label values, formatted once.
    bounds: Box<[Box<str>]>,
    bucket_name: Box<str>,
    sum_name: Box<str>,
    count_name: Box<str>,
    live: u32,
}

pub struct Hist {
    /// Per bucket (not cumulative), the last one is `+Inf`.
    pub counts: Box<[u64]>,
    pub sum: f64,
    pub count: u64,
}

pub enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(Box<Hist>),
    Summary(Box<Summary>),
}

pub struct Series {
    pub family: u32,
    pub labels: Box<[(Box<str>, Box<str>)]>,
    pub value: Value,
    pub updated_ms: u64,
    /// 0: never expires.
    pub ttl_ms: u64,
    /// SDK handles of the series' samples, from its last emission.
    handles: Vec<u64>,
}

/// What a new series needs.
pub struct SeriesSpec<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub help: &'a str,
    /// Sorted by name, no empty values.
    pub labels: &'a [(String, String)],
    pub buckets: &'a Arc<[f64]>,
    pub summary: &'a Arc<SummaryOptions>,
    pub ttl_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Series(u32),
    /// The name is taken by another type (statsd_exporter_events_conflict_total).
    Conflict,
    /// `max_series` reached (sonde_statsd_series_dropped_total).
    Limit,
}

#[derive(Default)]
pub struct Store {
    families: Vec<Option<Family>>,
    free_families: Vec<u32>,
    family_index: HashMap<Box<str>, u32>,
    series: Vec<Option<Series>>,
    free: Vec<u32>,
    /// `family id ++ (name 0xFF value 0xFE)*` → slot.
    index: HashMap<Box<[u8]>, u32>,
    live: usize,
    /// Live series with a TTL: when none, the sweep has nothing to look for.
    with_ttl: usize,
    pub max_series: usize,
}

fn series_key(family: u32, labels: impl Iterator<Item = (impl AsRef<str>, impl AsRef<str>)>) -> Vec<u8> {
    let mut k = family.to_le_bytes().to_vec();
    for (n, v) in labels {
        k.extend_from_slice(n.as_ref().as_bytes());
        k.push(0xFF);
        k.extend_from_slice(v.as_ref().as_bytes());
        k.push(0xFE);
    }
    k
}

impl Store {
    pub fn new(max_series: usize) -> Store {
        Store {
            max_series,
            ..Default::default()
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Live families by kind, for `statsd_exporter_metrics_total{type}`.
    pub fn families_by_kind(&self) -> [u64; 4] {
        let mut n = [0; 4];
        for f in self.families.iter().flatten() {
            n[f.kind as usize] += 1;
        }
        n
    }

    pub fn series(&self, slot: u32) -> Option<&Series> {
        self.series.get(slot as usize).and_then(|s| s.as_ref())
    }

    pub fn family(&self, id: u32) -> Option<&Family> {
        self.families.get(id as usize).and_then(|f| f.as_ref())
    }

    fn kind_of(&self, name: &str) -> Option<Kind> {
        let id = self.family_index.get(name)?;
        self.family(*id).map(|f| f.kind)
    }

    /// statsd_exporter's registry checks: the name itself taken by another type; a
    /// histogram's or summary's `_sum`/`_count`(/`_bucket`) taken by another type; a
    /// counter or gauge named `x_sum`/`x_count`/`x_bucket` while `x` is not a counter.
    fn conflicts(&self, name: &str, kind: Kind) -> bool {
        let other = |n: &str, k: Kind| self.kind_of(n).is_some_and(|have| have != k);
        if other(name, kind) {
            return true;
        }
        match kind {
            Kind::Counter | Kind::Gauge => ["_bucket", "_count", "_sum"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|base| other(base, Kind::Counter))),
            Kind::Histogram => ["_sum", "_count", "_bucket"]
                .iter()
                .any(|s| other(&format!("{name}{s}"), Kind::Histogram)),
            Kind::Summary => ["_sum", "_count"]
                .iter()
                .any(|s| other(&format!("{name}{s}"), Kind::Summary)),
        }
    }

    pub fn get_or_create(&mut self, spec: &SeriesSpec, now_ms: u64) -> Lookup {
        if self.conflicts(spec.name, spec.kind) {
            return Lookup::Conflict;
        }
        let fid = self.family_index.get(spec.name).copied();
        if let Some(fid) = fid {
            let key = series_key(fid, spec.labels.iter().map(|(n, v)| (n, v)));
            if let Some(&slot) = self.index.get(&key[..]) {
                let s = self.series[slot as usize].as_mut().expect("indexed");
                // statsd_exporter takes the TTL of the latest mapping.
                match (s.ttl_ms > 0, spec.ttl_ms > 0) {
                    (false, true) => self.with_ttl += 1,
                    (true, false) => self.with_ttl -= 1,
                    _ => {}
                }
                s.ttl_ms = spec.ttl_ms;
                return Lookup::Series(slot);
            }
        }
        if self.live >= self.max_series {
            return Lookup::Limit;
        }
        let fid = fid.unwrap_or_else(|| self.create_family(spec));
        let family = self.families[fid as usize].as_mut().expect("live family");
        family.live += 1;
        let value = match family.kind {
            Kind::Counter => Value::Counter(0.0),
            Kind::Gauge => Value::Gauge(0.0),
            Kind::Histogram => Value::Histogram(Box::new(Hist {
                counts: vec![0; family.buckets.len() + 1].into(),
                sum: 0.0,
                count: 0,
            })),
            Kind::Summary => Value::Summary(Box::new(Summary::new(
                family.summary.max_age_ms,
                family.summary.age_buckets,
            ))),
        };
        let labels = spec
            .labels
            .iter()
            .map(|(n, v)| (n.as_str().into(), v.as_str().into()))
            .collect();
        self.insert(fid, labels, value, now_ms, spec.ttl_ms)
    }

    fn insert(
        &mut self,
        fid: u32,
        labels: Box<[(Box<str>, Box<str>)]>,
        value: Value,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Lookup {
        let key = series_key(fid, labels.iter().map(|(n, v)| (n, v)));
        let s = Series {
            family: fid,
            labels,
            value,
            updated_ms: now_ms,
            ttl_ms,
            handles: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(i) => {
                self.series[i as usize] = Some(s);
                i
            }
            None => {
                self.series.push(Some(s));
                (self.series.len() - 1) as u32
            }
        };
        self.index.insert(key.into(), slot);
        self.live += 1;
        self.with_ttl += (ttl_ms > 0) as usize;
        Lookup::Series(slot)
    }

    fn create_family(&mut self, spec: &SeriesSpec) -> u32 {
        let bounds: Box<[Box<str>]> = match spec.kind {
            Kind::Histogram => spec
                .buckets
                .iter()
                .map(|b| go_float(*b).into())
                .chain(std::iter::once("+Inf".into()))
                .collect(),
            Kind::Summary => spec.summary.quantiles.iter().map(|q| go_float(*q).into()).collect(),
            _ => Box::new([]),
        };
        let f = Family {
            name: spec.name.into(),
            kind: spec.kind,
            help: spec.help.into(),
            buckets: spec.buckets.clone(),
            summary: spec.summary.clone(),
            bounds,
            bucket_name: format!("{}_bucket", spec.name).into(),
            sum_name: format!("{}_sum", spec.name).into(),
            count_name: format!("{}_count", spec.name).into(),
            live: 0,
        };
        let id = match self.free_families.pop() {
            Some(id) => {
                self.families[id as usize] = Some(f);
                id
            }
            None => {
                self.families.push(Some(f));
                (self.families.len() - 1) as u32
            }
        };
        self.family_index.insert(spec.name.into(), id);
        id
    }

    /// Applies one event (standing for `n` events) to a live series.
    #[inline]
    pub fn update(&mut self, slot: u32, v: f64, relative: bool, n: u64, now_ms: u64) {
        let Some(Some(s)) = self.series.get_mut(slot as usize) else {
            return;
        };
        s.updated_ms = now_ms;
        match &mut s.value {
            Value::Counter(c) => *c += v * n as f64,
            Value::Gauge(g) => {
                if relative {
                    *g += v
                } else {
                    *g = v
                }
            }
            Value::Histogram(h) => {
                let fam = self.families[s.family as usize].as_ref().expect("live family");
                // client_golang: the first bucket whose bound is >= v (NaN: +Inf).
                let i = fam.buckets.iter().position(|b| v <= *b).unwrap_or(fam.buckets.len());
                h.counts[i] += n;
                h.sum = crate::summary::add_repeated(h.sum, v, n);
                h.count += n;
            }
            Value::Summary(sm) => sm.observe(v, n, now_ms),
        }
    }

    /// Removes series not updated within their TTL (statsd_exporter: `last + ttl <
    /// now`), and families left empty. Returns whether anything was removed.
    pub fn sweep(&mut self, now_ms: u64) -> bool {
        let mut removed = false;
        if self.with_ttl == 0 {
            return false;
        }
        for slot in 0..self.series.len() {
            let expired = matches!(&self.series[slot], Some(s) if s.ttl_ms > 0 && s.updated_ms + s.ttl_ms < now_ms);
            if expired {
                self.remove(slot as u32);
                removed = true;
            }
        }
        removed
    }

    fn remove(&mut self, slot: u32) {
        let Some(s) = self.series[slot as usize].take() else {
            return;
        };
        let key = series_key(s.family, s.labels.iter().map(|(n, v)| (n, v)));
        self.index.remove(&key[..]);
        self.free.push(slot);
        self.live -= 1;
        self.with_ttl -= (s.ttl_ms > 0) as usize;
        let f = self.families[s.family as usize].as_mut().expect("live family");
        f.live -= 1;
        if f.live == 0 {
            let name = f.name.clone();
            self.families[s.family as usize] = None;
            self.family_index.remove(&name);
            self.free_families.push(s.family);
        }
    }

    /// Emits every live series.
    pub fn emit(&mut self, out: &mut Collection, now_ms: u64) {
        let mut values = Vec::new();
        for slot in 0..self.series.len() {
            let Some(s) = self.series[slot].as_mut() else { continue };
            let f = self.families[s.family as usize].as_ref().expect("live family");
            values.clear();
            sample_values(f, &s.value, now_ms, &mut values);
            let by_handle = s.handles.len() == values.len()
                && s.handles
                    .iter()
                    .zip(&values)
                    .all(|(h, v)| out.sample_by_handle(*h, *v, None));
            if !by_handle {
                s.handles = register(out, f, &s.labels, &values);
            }
        }
    }

    /// Every live series, for snapshots and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&Family, &Series)> {
        self.series
            .iter()
            .flatten()
            .map(|s| (self.families[s.family as usize].as_ref().expect("live family"), s))
    }

    /// Restores a series taken by [`Store::iter`] in an earlier instance.
    pub fn restore(&mut self, spec: &SeriesSpec, value: Value, now_ms: u64) -> bool {
        match self.get_or_create(spec, now_ms) {
            Lookup::Series(slot) => {
                let s = self.series[slot as usize].as_mut().expect("just created");
                match (&mut s.value, value) {
                    (Value::Counter(a), Value::Counter(b)) | (Value::Gauge(a), Value::Gauge(b)) => *a = b,
                    (Value::Histogram(a), Value::Histogram(b)) if a.counts.len() == b.counts.len() => *a = b,
                    (Value::Summary(a), Value::Summary(b)) => {
                        a.sum = b.sum;
                        a.count = b.count;
                    }
                    _ => return false,
                }
                true
            }
            _ => false,
        }
    }
}

/// The sample values of a series in emission order: counter/gauge value; histogram
/// cumulative buckets, sum, count; summary quantiles, sum, count.
fn sample_values(f: &Family, v: &Value, now_ms: u64, out: &mut Vec<f64>) {
    match v {
        Value::Counter(x) | Value::Gauge(x) => out.push(*x),
        Value::Histogram(h) => {
            let mut acc = 0;
            for c in h.counts.iter() {
                acc += c;
                out.push(acc as f64);
            }
            out.push(h.sum);
            out.push(h.count as f64);
        }
        Value::Summary(s) => {
            out.extend(s.quantiles(&f.summary.quantiles, now_ms));
            out.push(s.sum);
            out.push(s.count as f64);
        }
    }
}

fn register(out: &mut Collection, f: &Family, labels: &[(Box<str>, Box<str>)], values: &[f64]) -> Vec<u64> {
    let fam = out.family(&f.name, f.kind.sdk(), &f.help);
    let base: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (&**n, &**v)).collect();
    let mut handles = Vec::with_capacity(values.len());
    let mut emit = |name: &str, labels: &[(&str, &str)], v: f64| {
        handles.push(out.sample_handle(fam, name, labels, v, None));
    };
    match f.kind {
        Kind::Counter | Kind::Gauge => emit(&f.name, &base, values[0]),
        Kind::Histogram | Kind::Summary => {
            let (label, name) = if f.kind == Kind::Histogram {
                ("le", &f.bucket_name)
            } else {
                ("quantile", &f.name)
            };
            let n = f.bounds.len();
            for (bound, v) in f.bounds.iter().zip(values) {
                let mut l = base.clone();
                l.push((label, bound));
                emit(name, &l, *v);
            }
            emit(&f.sum_name, &base, values[n]);
            emit(&f.count_name, &base, values[n + 1]);
        }
    }
    handles
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as the exposition writes `le` and
/// `quantile` (`0.005`, `1`, `1e+06`).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mant) = mant.strip_prefix('-').map_or(("", mant), |m| ("-", m));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    // %g with the shortest precision: an exponent below -4 or from 6 on.
    if !(-4..6).contains(&exp) {
        let (d0, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{d0}{frac}e{es}{:02}", exp.abs());
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_format() {
        for (v, s) in [
            (0.005, "0.005"),
            (1.0, "1"),
            (2.5, "2.5"),
            (10.0, "10"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1.5e7, "1.5e+07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.25, "-0.25"),
            (0.99, "0.99"),
            (0.999, "0.999"),
        ] {
            assert_eq!(go_float(v), s, "{v}");
        }
    }
}
