//! The per-target series table: decodes a plugin's batch (wire format in
//! wit/plugin.wit) into storage appends, validating it first so a bad batch changes
//! nothing, and derives staleness from the series that stopped being reported.

use crate::storage::{Metadata, STALE_NAN, SeriesRef, Storage};
use sonde_plugin_host::{Batch, MetricKind};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

/// Ids and refs are small integers chosen by the plugin and the store: one multiply
/// hashes them well enough, and this table is on the per-sample path (SipHash cost
/// more than the rest of it).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// The most a target's explicit timestamps hold block cuts back (see
/// [`hold_cuts_for_timestamps`]); older samples are refused once their range is cut.
const MAX_TIMESTAMP_HOLD: Duration = Duration::from_secs(10 * 60);

/// A target that exposes its own timestamps (an exporter relaying data it fetched a
/// minute ago) sends samples behind the clock: block cuts then wait that long (up to
/// [`MAX_TIMESTAMP_HOLD`]) so that its next samples still reach the head.
fn hold_cuts_for_timestamps(batch: &Batch, head: &Storage, now_ms: i64) {
    let oldest = batch.timestamps.iter().copied().filter(|&t| t != NOW).min();
    if let Some(t) = oldest
        && t < now_ms
    {
        let behind = Duration::from_millis(now_ms.abs_diff(t)).min(MAX_TIMESTAMP_HOLD);
        head.hold_cuts_for(behind + Duration::from_secs(5));
    }
}

/// `batch.timestamps` value meaning "the collection's start time".
const NOW: i64 = i64::MIN;

/// Longest metric or label name accepted from a plugin, and longest label value:
/// far beyond real use, and a bound on what one bad series can cost.
const MAX_NAME_LEN: usize = 1024;
const MAX_VALUE_LEN: usize = 16 * 1024;
const MAX_LABELS: usize = 64;

/// Labels every series of the target gets (job, instance, configured labels), and
/// who wins when a series carries one of them too.
#[derive(Debug, Clone)]
pub struct TargetLabels {
    pub pairs: Vec<(String, String)>,
    /// `honor_labels`: the plugin's value wins (as Prometheus's `honor_labels: true`,
    /// for federation and pushgateway-like targets); otherwise the plugin's label is
    /// renamed `exported_<name>`.
    pub honor: bool,
}

/// Where a plugin's series are, by id, at 16 bytes a series. SDK plugins number their
/// series densely from 0 and reuse the ids they free, so an id indexes a `Vec`; an id
/// far past the table's size (a plugin with a numbering of its own) goes to a map.
#[derive(Default)]
struct Slots {
    dense: Vec<Slot>,
    sparse: IdMap<u32, Slot>,
    len: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    /// [`NO_SERIES`]: the id is free.
    sref: SeriesRef,
    /// The round in which the series was last reported (a round number wraps after
    /// 2^32 collections).
    seen: u32,
}

/// No series has the ref 0 (the store numbers them from 1).
const NO_SERIES: SeriesRef = 0;
const FREE: Slot = Slot {
    sref: NO_SERIES,
    seen: 0,
};

/// Ids below this many beyond twice the series count are kept in the `Vec`.
const DENSE_SLACK: usize = 1024;

impl Slots {
    fn get(&self, id: u32) -> Option<&Slot> {
        match self.dense.get(id as usize) {
            Some(s) => (s.sref != NO_SERIES).then_some(s),
            None => self.sparse.get(&id),
        }
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Slot> {
        match self.dense.get_mut(id as usize) {
            Some(s) => (s.sref != NO_SERIES).then_some(s),
            None => self.sparse.get_mut(&id),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    /// Makes room in the `Vec` for ids up to `max` when `adding` more series make them
    /// dense enough: exactly for the first batch (which defines most of a plugin's
    /// series), by an eighth at least after that.
    fn reserve_up_to(&mut self, max: u32, adding: usize) {
        let want = max as usize + 1;
        if want <= self.dense.len() || want > 2 * (self.len + adding) + DENSE_SLACK {
            return;
        }
        let cap = self.dense.capacity();
        if want > cap {
            let target = if cap == 0 { want } else { want.max(cap + cap / 8) };
            self.dense.reserve_exact(target - self.dense.len());
        }
        self.dense.resize(want, FREE);
        // Ids that were sparse now fall inside the `Vec`.
        let moved: Vec<u32> = self.sparse.keys().copied().filter(|&id| (id as usize) < want).collect();
        for id in moved {
            self.dense[id as usize] = self.sparse.remove(&id).expect("listed");
        }
    }

    /// Adds a series under a free id.
    fn insert(&mut self, id: u32, sref: SeriesRef) {
        debug_assert!(sref != NO_SERIES && !self.contains(id));
        self.reserve_up_to(id, 1);
        let slot = Slot { sref, seen: 0 };
        match self.dense.get_mut(id as usize) {
            Some(s) => *s = slot,
            None => {
                self.sparse.insert(id, slot);
            }
        }
        self.len += 1;
    }

    fn remove(&mut self, id: u32) -> Option<SeriesRef> {
        let sref = match self.dense.get_mut(id as usize) {
            Some(s) => std::mem::replace(s, FREE).sref,
            None => self.sparse.remove(&id).map_or(NO_SERIES, |s| s.sref),
        };
        (sref != NO_SERIES).then(|| {
            self.len -= 1;
            sref
        })
    }

    /// Every (id, series ref).
    fn iter(&self) -> impl Iterator<Item = (u32, SeriesRef)> + '_ {
        let dense = self.dense.iter().enumerate().map(|(id, s)| (id as u32, s.sref));
        dense
            .filter(|s| s.1 != NO_SERIES)
            .chain(self.sparse.iter().map(|(id, s)| (*id, s.sref)))
    }
}

#[derive(Default)]
pub struct SeriesTable {
    families: IdSet<u32>,
    series: Slots,
    /// Ids reported by the previous successful collection (round `present_round`).
    present: Vec<u32>,
    /// Series reported by that collection whose ids were dropped since (forgotten by
    /// the plugin, or the table was reset): they go stale unless reported again.
    orphans: Vec<SeriesRef>,
    present_round: u32,
    round: u32,
    /// The samples of the batch being applied, kept between batches: allocated anew
    /// each time, a page's worth (240 KB at 10k series) came from a fresh mapping and
    /// was faulted in page by page on every collection.
    samples: Vec<(SeriesRef, i64, f64)>,
}

/// What one applied batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub samples: usize,
    pub series_added: usize,
    pub stale_marked: usize,
}

impl SeriesTable {
    pub fn len(&self) -> usize {
        self.series.len
    }

    /// Validates `batch` against the table and, if it is sound, appends its samples
    /// (stamped `now_ms` unless the plugin gave timestamps) and staleness markers for
    /// series that disappeared. On error nothing is changed.
    pub fn apply(
        &mut self,
        batch: &Batch,
        target: &TargetLabels,
        head: &Storage,
        now_ms: i64,
    ) -> Result<Applied, String> {
        self.validate(batch)?;
        self.round = self.round.wrapping_add(1);
        if let Some(max) = batch.series.iter().map(|s| s.id).max() {
            self.series.reserve_up_to(max, batch.series.len());
        }
        let mut added = 0;
        let mut new_ids = Vec::with_capacity(batch.series.len());
        // The series this table holds, built only when a new series was held by someone
        // already (it may be one of ours: two ids with one label set).
        let mut held: Option<IdSet<SeriesRef>> = None;
        for s in &batch.series {
            let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len() + target.pairs.len() + 1);
            pairs.push(("__name__", &s.name));
            let mut renamed: Vec<(String, &str)> = Vec::new();
            let is_target_label = |name: &str| target.pairs.iter().any(|(n, _)| n == name);
            for l in &s.labels {
                if !is_target_label(&l.name) {
                    pairs.push((&l.name, &l.value));
                } else if target.honor {
                    // An empty value is an absent label: the target's applies.
                    if !l.value.is_empty() {
                        pairs.push((&l.name, &l.value));
                    }
                } else {
                    renamed.push((format!("exported_{}", l.name), &l.value));
                }
            }
            pairs.extend(renamed.iter().map(|(n, v)| (n.as_str(), *v)));
            let own = |name: &str| target.honor && s.labels.iter().any(|l| l.name == name && !l.value.is_empty());
            pairs.extend(
                target
                    .pairs
                    .iter()
                    .filter(|(n, _)| !own(n))
                    .map(|(n, v)| (n.as_str(), v.as_str())),
            );
            let pinned = match head.pin(&pairs) {
                Ok(p) => p,
                Err(e) => {
                    self.rollback(head, &new_ids);
                    return Err(e);
                }
            };
            let sref = pinned.sref;
            let ours = if pinned.shared {
                let held = held.get_or_insert_with(|| self.series.iter().map(|(_, r)| r).collect());
                !held.insert(sref)
            } else {
                if let Some(held) = &mut held {
                    held.insert(sref);
                }
                false
            };
            if ours {
                let other = self.series.iter().find(|e| e.1 == sref).map_or(0, |e| e.0);
                // Roll back this batch's new series before reporting.
                head.release(sref);
                self.rollback(head, &new_ids);
                return Err(format!(
                    "invalid output: series {} (id {}) has the same name and labels as id {other}",
                    s.name, s.id
                ));
            }
            self.series.insert(s.id, sref);
            new_ids.push(s.id);
            added += 1;
        }
        // One lookup per sample: it checks the id (unknown, or twice in the batch),
        // marks the series seen and counts the ones seen last time too. A failed
        // batch leaves `seen` marks of its own round, which no later round matches.
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        samples.reserve(batch.ids.len());
        let mut seen_again = 0;
        let round = self.round;
        for (i, &id) in batch.ids.iter().enumerate() {
            let problem = match self.series.get_mut(id) {
                None => format!("sample for unknown series id {id}"),
                Some(e) if e.seen == round => format!("series id {id} reported twice in one batch"),
                Some(e) => {
                    seen_again += usize::from(e.seen == self.present_round);
                    e.seen = round;
                    let t = match batch.timestamps.get(i) {
                        Some(&t) if t != NOW => t,
                        _ => now_ms,
                    };
                    samples.push((e.sref, t, batch.values[i]));
                    continue;
                }
            };
            self.rollback(head, &new_ids);
            return Err(format!("invalid output: {problem}"));
        }
        // The batch is sound: its families are known from now on.
        for f in &batch.families {
            self.families.insert(f.id);
            let names = sample_names(&f.name, f.kind);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            head.set_metadata(&names, metadata(f));
        }
        let reported = samples.len();
        // Every series reported last time was reported again (the usual case): none
        // went away, and no second pass over them is needed.
        let mut gone: Vec<SeriesRef> = Vec::new();
        if seen_again != self.present.len() {
            gone.extend(self.present.iter().filter_map(|&id| {
                let e = self.series.get(id)?;
                (e.seen != round).then_some(e.sref)
            }));
        }
        if !self.orphans.is_empty() {
            // Unless reported again, under another id.
            let orphans: IdSet<SeriesRef> = self.orphans.drain(..).collect();
            let again: IdSet<SeriesRef> = samples.iter().map(|s| s.0).filter(|r| orphans.contains(r)).collect();
            gone.extend(orphans.difference(&again));
        }
        samples.extend(gone.iter().map(|r| (*r, now_ms, STALE_NAN)));
        if !batch.timestamps.is_empty() {
            hold_cuts_for_timestamps(batch, head, now_ms);
        }
        head.append(&samples)?;
        self.samples = samples;
        self.present.clear();
        self.present.extend(&batch.ids);
        self.present_round = round;
        if !batch.forget.is_empty() {
            self.forget(&batch.forget, head);
        }
        Ok(Applied {
            samples: reported,
            series_added: added,
            stale_marked: gone.len(),
        })
    }

    /// Drops ids the plugin forgot. One it reported in this round leaves the present
    /// list for the orphans (its id may name another series next time).
    fn forget(&mut self, ids: &[u32], head: &Storage) {
        let mut reported = IdSet::default();
        for &id in ids {
            let Some(&e) = self.series.get(id) else { continue };
            self.series.remove(id);
            head.release(e.sref);
            if e.seen == self.present_round {
                reported.insert(id);
                self.orphans.push(e.sref);
            }
        }
        if !reported.is_empty() {
            self.present.retain(|id| !reported.contains(id));
        }
    }

    /// Series reported by the last successful collection, by ref.
    fn present_refs(&self) -> impl Iterator<Item = SeriesRef> + '_ {
        let ids = self.present.iter().filter_map(|&id| self.series.get(id));
        ids.map(|e| e.sref).chain(self.orphans.iter().copied())
    }

    /// A failed collection: every series reported last time goes stale.
    pub fn mark_all_stale(&mut self, head: &Storage, now_ms: i64) -> usize {
        let samples: Vec<_> = self.present_refs().map(|r| (r, now_ms, STALE_NAN)).collect();
        self.present.clear();
        self.orphans.clear();
        if let Err(e) = head.append(&samples) {
            tracing::warn!("staleness markers lost: {e}");
        }
        samples.len()
    }

    /// Forgets series this batch registered before it was found invalid.
    fn rollback(&mut self, head: &Storage, new_ids: &[u32]) {
        for &id in new_ids {
            if let Some(r) = self.series.remove(id) {
                head.release(r);
            }
        }
    }

    /// The instance was re-created: its ids mean nothing any more. What the last
    /// collection reported still goes stale if the new instance does not report it.
    pub fn reset(&mut self, head: &Storage) {
        let orphans: Vec<SeriesRef> = self.present_refs().collect();
        self.orphans = orphans;
        self.present.clear();
        self.families.clear();
        for (_, r) in self.series.iter() {
            head.release(r);
        }
        self.series = Slots::default();
    }

    fn validate(&self, b: &Batch) -> Result<(), String> {
        let bad = |m: String| Err(format!("invalid output: {m}"));
        if b.ids.len() != b.values.len() {
            return bad(format!("{} ids but {} values", b.ids.len(), b.values.len()));
        }
        if !b.timestamps.is_empty() && b.timestamps.len() != b.ids.len() {
            return bad(format!("{} timestamps for {} samples", b.timestamps.len(), b.ids.len()));
        }
        let mut new_families: IdMap<u32, &String> = IdMap::default();
        for f in &b.families {
            if self.families.contains(&f.id) || new_families.insert(f.id, &f.name).is_some() {
                return bad(format!("family id {} defined twice", f.id));
            }
            check_metric_name(&f.name).or_else(|e| bad(format!("family {:?}: {e}", f.name)))?;
        }
        let mut new_series: IdSet<u32> = IdSet::default();
        for s in &b.series {
            if self.series.contains(s.id) || !new_series.insert(s.id) {
                return bad(format!("series id {} defined twice (forget it first)", s.id));
            }
            if !self.families.contains(&s.family) && !new_families.contains_key(&s.family) {
                return bad(format!("series {:?} refers to unknown family id {}", s.name, s.family));
            }
            check_metric_name(&s.name).or_else(|e| bad(format!("series {:?}: {e}", s.name)))?;
            if s.labels.len() > MAX_LABELS {
                return bad(format!(
                    "series {:?} has {} labels (max {MAX_LABELS})",
                    s.name,
                    s.labels.len()
                ));
            }
            for (i, l) in s.labels.iter().enumerate() {
                crate::config::check_label_name(&l.name)
                    .or_else(|e| bad(format!("series {:?} label {:?}: {e}", s.name, l.name)))?;
                if l.value.len() > MAX_VALUE_LEN {
                    return bad(format!(
                        "series {:?} label {:?}: value longer than {MAX_VALUE_LEN} bytes",
                        s.name, l.name
                    ));
                }
                if s.labels[..i].iter().any(|o| o.name == l.name) {
                    return bad(format!("series {:?} has label {:?} twice", s.name, l.name));
                }
            }
        }
        // Sample ids are checked by `apply`'s one pass over them.
        Ok(())
    }
}

fn check_metric_name(n: &str) -> Result<(), &'static str> {
    let mut chars = n.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') || n.len() > MAX_NAME_LEN {
        return Err("metric names match [a-zA-Z_:][a-zA-Z0-9_:]*");
    }
    Ok(())
}

pub fn kind_name(k: MetricKind) -> &'static str {
    match k {
        MetricKind::Counter => "counter",
        MetricKind::Gauge | MetricKind::Info | MetricKind::StateSet => "gauge",
        MetricKind::Histogram | MetricKind::GaugeHistogram => "histogram",
        MetricKind::Summary => "summary",
        MetricKind::Unknown => "untyped",
    }
}

fn metadata(f: &sonde_plugin_host::Family) -> Metadata {
    Metadata {
        family: f.name.as_str().into(),
        kind: kind_name(f.kind).into(),
        help: f.help.as_str().into(),
        unit: f.unit.as_str().into(),
    }
}

/// The sample names a family's series use, so each maps back to its family.
fn sample_names(family: &str, kind: MetricKind) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        MetricKind::Histogram | MetricKind::GaugeHistogram => &["", "_bucket", "_sum", "_count"],
        MetricKind::Summary => &["", "_sum", "_count"],
        _ => &[""],
    };
    suffixes.iter().map(|s| format!("{family}{s}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::is_stale_nan;
    use sonde_plugin_host::{Family, Label, Series};

    fn target() -> TargetLabels {
        TargetLabels {
            pairs: vec![("instance".into(), "h".into()), ("job".into(), "j".into())],
            honor: false,
        }
    }

    fn family(id: u32, name: &str) -> Family {
        Family {
            id,
            name: name.into(),
            kind: MetricKind::Gauge,
            help: String::new(),
            unit: String::new(),
        }
    }

    fn series(id: u32, name: &str, labels: &[(&str, &str)]) -> Series {
        Series {
            id,
            family: 0,
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    fn batch(families: Vec<Family>, series: Vec<Series>, samples: &[(u32, f64)]) -> Batch {
        Batch {
            families,
            series,
            forget: vec![],
            ids: samples.iter().map(|s| s.0).collect(),
            values: samples.iter().map(|s| s.1).collect(),
            timestamps: vec![],
            target_errors: vec![],
        }
    }

    /// The first batch of a plugin with two series of `m` (ids 1 and 2, `a` = "1" and
    /// "2"), each reported.
    fn two_series() -> Batch {
        batch(
            vec![family(0, "m")],
            vec![series(1, "m", &[("a", "1")]), series(2, "m", &[("a", "2")])],
            &[(1, 1.0), (2, 2.0)],
        )
    }

    /// (labels rendered, last sample) of every series in the head.
    fn dump(head: &Storage) -> Vec<(String, i64, f64)> {
        let mut v: Vec<_> = head
            .select(&[], i64::MIN, i64::MAX)
            .into_iter()
            .map(|(l, s)| (format!("{l:?}"), s.last().unwrap().0, s.last().unwrap().1))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn honor_labels_lets_the_plugin_value_win() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let honor = TargetLabels {
            honor: true,
            ..target()
        };
        let b = batch(
            vec![family(0, "m")],
            vec![
                series(7, "m", &[("job", "inner"), ("x", "1")]),
                // An empty value is an absent label: the target's instance applies.
                series(8, "m", &[("instance", ""), ("x", "2")]),
            ],
            &[(7, 2.5), (8, 3.5)],
        );
        t.apply(&b, &honor, &head, 1000).unwrap();
        assert_eq!(
            dump(&head),
            vec![
                (r#"m{instance="h",job="inner",x="1"}"#.into(), 1000, 2.5),
                (r#"m{instance="h",job="j",x="2"}"#.into(), 1000, 3.5),
            ]
        );
    }

    #[test]
    fn samples_get_target_labels_and_plugin_collisions_are_exported() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let b = batch(
            vec![family(0, "m")],
            vec![series(7, "m", &[("job", "inner"), ("x", "1")])],
            &[(7, 2.5)],
        );
        let a = t.apply(&b, &target(), &head, 1000).unwrap();
        assert_eq!(
            a,
            Applied {
                samples: 1,
                series_added: 1,
                stale_marked: 0
            }
        );
        assert_eq!(
            dump(&head),
            vec![(
                r#"m{exported_job="inner",instance="h",job="j",x="1"}"#.into(),
                1000,
                2.5
            )]
        );
        assert_eq!(head.metadata("m").unwrap().kind, "gauge");
    }

    #[test]
    fn series_that_disappear_get_a_staleness_marker_once() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let b = two_series();
        t.apply(&b, &target(), &head, 1000).unwrap();
        let a = t
            .apply(&batch(vec![], vec![], &[(1, 1.5)]), &target(), &head, 2000)
            .unwrap();
        assert_eq!(a.stale_marked, 1);
        let d = dump(&head);
        assert_eq!((d[0].1, d[0].2), (2000, 1.5));
        assert!(d[1].1 == 2000 && is_stale_nan(d[1].2), "{d:?}");
        let a = t
            .apply(&batch(vec![], vec![], &[(1, 1.7)]), &target(), &head, 3000)
            .unwrap();
        assert_eq!(a.stale_marked, 0, "already stale");
    }

    #[test]
    fn a_failed_collection_marks_everything_stale() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let b = batch(vec![family(0, "m")], vec![series(1, "m", &[])], &[(1, 1.0)]);
        t.apply(&b, &target(), &head, 1000).unwrap();
        assert_eq!(t.mark_all_stale(&head, 2000), 1);
        assert!(is_stale_nan(dump(&head)[0].2));
        assert_eq!(t.mark_all_stale(&head, 3000), 0);
    }

    #[test]
    fn invalid_batches_are_rejected_without_changing_anything() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        t.apply(
            &batch(vec![family(0, "m")], vec![series(1, "m", &[])], &[(1, 1.0)]),
            &target(),
            &head,
            1000,
        )
        .unwrap();
        let cases: Vec<(Batch, &str)> = vec![
            (batch(vec![], vec![], &[(9, 1.0)]), "unknown series id 9"),
            (batch(vec![], vec![series(1, "m", &[])], &[]), "defined twice"),
            (batch(vec![family(0, "m")], vec![], &[]), "family id 0 defined twice"),
            (
                batch(
                    vec![],
                    vec![Series {
                        family: 5,
                        ..series(2, "m", &[])
                    }],
                    &[],
                ),
                "unknown family id 5",
            ),
            (
                batch(vec![], vec![series(2, "bad-name", &[])], &[]),
                "metric names match",
            ),
            (batch(vec![], vec![series(2, "m", &[("__x", "1")])], &[]), "reserved"),
            (
                batch(vec![], vec![series(2, "m", &[("a", "1"), ("a", "2")])], &[]),
                "twice",
            ),
            (batch(vec![], vec![], &[(1, 1.0), (1, 2.0)]), "reported twice"),
            (
                Batch {
                    values: vec![],
                    ..batch(vec![], vec![], &[(1, 1.0)])
                },
                "1 ids but 0 values",
            ),
            (
                Batch {
                    timestamps: vec![1, 2],
                    ..batch(vec![], vec![], &[(1, 1.0)])
                },
                "timestamps",
            ),
        ];
        for (b, want) in cases {
            let err = t.apply(&b, &target(), &head, 2000).unwrap_err();
            assert!(err.starts_with("invalid output") && err.contains(want), "{want}: {err}");
        }
        assert_eq!(
            dump(&head),
            vec![(r#"m{instance="h",job="j"}"#.into(), 1000, 1.0)],
            "nothing was appended"
        );
        // A batch that defines a family and a series and then fails on its samples
        // keeps neither: the same definitions are accepted next time, and the series
        // the failed batches named are not taken for gone.
        let b = batch(vec![family(3, "n")], vec![series(2, "n", &[])], &[(2, 1.0), (2, 2.0)]);
        let err = t.apply(&b, &target(), &head, 2000).unwrap_err();
        assert!(err.contains("series id 2 reported twice"), "{err}");
        let b = batch(vec![family(3, "n")], vec![series(2, "n", &[])], &[(1, 3.0), (2, 4.0)]);
        let applied = t.apply(&b, &target(), &head, 3000).unwrap();
        assert_eq!(applied.stale_marked, 0);
        assert_eq!(
            dump(&head),
            vec![
                (r#"m{instance="h",job="j"}"#.into(), 3000, 3.0),
                (r#"n{instance="h",job="j"}"#.into(), 3000, 4.0),
            ]
        );
    }

    #[test]
    fn two_ids_with_one_label_set_are_rejected_and_rolled_back() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let b = batch(
            vec![family(0, "m")],
            vec![series(1, "m", &[("a", "1")]), series(2, "m", &[("a", "1")])],
            &[],
        );
        let err = t.apply(&b, &target(), &head, 1000).unwrap_err();
        assert!(err.contains("same name and labels"), "{err}");
        assert_eq!(t.len(), 0);
        // The ids are free again, the family id too: a valid batch defining them is
        // accepted.
        let ok = batch(vec![family(0, "m")], vec![series(1, "m", &[("a", "1")])], &[(1, 1.0)]);
        t.apply(&ok, &target(), &head, 2000).unwrap();
    }

    #[test]
    fn explicit_timestamps_behind_the_clock_hold_block_cuts_back() {
        let (_dir, head) = crate::storage::test_storage();
        let before = head.db().cut_delay();
        let mut t = SeriesTable::default();
        let mut b = batch(vec![family(0, "m")], vec![series(1, "m", &[])], &[(1, 1.0)]);
        b.timestamps = vec![NOW];
        t.apply(&b, &target(), &head, 1_000_000).unwrap();
        assert_eq!(head.db().cut_delay(), before, "no explicit timestamp: no hold");
        b = batch(vec![], vec![], &[(1, 2.0)]);
        b.timestamps = vec![1_000_000 - 90_000];
        t.apply(&b, &target(), &head, 1_001_000).unwrap();
        assert_eq!(head.db().cut_delay(), Duration::from_secs(91 + 5));
        b.timestamps = vec![1_001_000 - 24 * 3_600_000];
        t.apply(&b, &target(), &head, 1_002_000).unwrap();
        assert_eq!(
            head.db().cut_delay(),
            MAX_TIMESTAMP_HOLD + Duration::from_secs(5),
            "capped"
        );
    }

    #[test]
    fn forgotten_ids_can_be_defined_again_and_explicit_timestamps_are_kept() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        t.apply(
            &batch(vec![family(0, "m")], vec![series(1, "m", &[("v", "a")])], &[(1, 1.0)]),
            &target(),
            &head,
            1000,
        )
        .unwrap();
        let mut b = batch(vec![], vec![], &[]);
        b.forget = vec![1];
        let a = t.apply(&b, &target(), &head, 2000).unwrap();
        assert_eq!(a.stale_marked, 1);
        let mut b = batch(vec![], vec![series(1, "m", &[("v", "b")])], &[(1, 5.0)]);
        b.timestamps = vec![1500];
        t.apply(&b, &target(), &head, 3000).unwrap();
        let d = dump(&head);
        assert_eq!(
            (d[1].0.as_str(), d[1].1, d[1].2),
            (r#"m{instance="h",job="j",v="b"}"#, 1500, 5.0)
        );
    }

    /// The value of the last sample of each series, by its `a` label.
    fn last_by_a(head: &Storage) -> Vec<(String, f64)> {
        let mut v: Vec<_> = head
            .select(&[], i64::MIN, i64::MAX)
            .into_iter()
            .map(|(l, s)| (l.get("a").unwrap_or_default().to_string(), s.last().unwrap().1))
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    #[test]
    fn sparse_ids_work_and_move_into_the_vec_when_it_reaches_them() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        // Far past a table of one series: kept aside.
        let far = 3000u32;
        let b = batch(
            vec![family(0, "m")],
            vec![series(far, "m", &[("a", "far")])],
            &[(far, 1.0)],
        );
        t.apply(&b, &target(), &head, 1000).unwrap();
        assert!(t.series.sparse.contains_key(&far));
        // Then ids up to past it: the `Vec` reaches it and takes it over.
        let ids: Vec<u32> = (0..=3100).filter(|&i| i != far).collect();
        let defs: Vec<Series> = ids.iter().map(|&i| series(i, "m", &[("a", &i.to_string())])).collect();
        let samples: Vec<(u32, f64)> = ids.iter().map(|&i| (i, i as f64)).chain([(far, 2.0)]).collect();
        let a = t.apply(&batch(vec![], defs, &samples), &target(), &head, 2000).unwrap();
        assert_eq!((a.samples, a.series_added, a.stale_marked), (3101, 3100, 0));
        assert!(t.series.sparse.is_empty() && t.series.dense.len() == 3101);
        let got = last_by_a(&head);
        assert_eq!(got.len(), 3101);
        for (a, v) in &got {
            let want = if a == "far" { 2.0 } else { a.parse::<f64>().unwrap() };
            assert_eq!(*v, want, "series a={a}");
        }
        // A sparse id far beyond everything still works, and forgetting frees ids.
        let huge = u32::MAX - 1;
        let mut b = batch(
            vec![],
            vec![series(huge, "m", &[("a", "huge")])],
            &[(huge, 5.0), (far, 3.0)],
        );
        b.forget = ids.clone();
        let a = t.apply(&b, &target(), &head, 3000).unwrap();
        assert_eq!((a.samples, a.stale_marked), (2, 3100));
        assert_eq!(t.len(), 2);
        assert!(t.series.sparse.contains_key(&huge));
    }

    #[test]
    fn two_tables_may_share_a_series_but_one_table_may_not_hold_it_twice() {
        let (_dir, head) = crate::storage::test_storage();
        let honor = TargetLabels {
            honor: true,
            ..target()
        };
        let (mut t1, mut t2) = (SeriesTable::default(), SeriesTable::default());
        let def = |id| batch(vec![family(0, "m")], vec![series(id, "m", &[("a", "1")])], &[(id, 1.0)]);
        t1.apply(&def(1), &honor, &head, 1000).unwrap();
        t2.apply(&def(4), &honor, &head, 1000).unwrap();
        // The same label set under a second id of t1, in a later batch.
        let b = batch(vec![], vec![series(2, "m", &[("a", "1")])], &[(1, 2.0)]);
        let err = t1.apply(&b, &honor, &head, 2000).unwrap_err();
        assert!(err.contains("(id 2) has the same name and labels as id 1"), "{err}");
        assert_eq!((t1.len(), t2.len()), (1, 1));
        // Neither table lost its series.
        t1.apply(&batch(vec![], vec![], &[(1, 3.0)]), &honor, &head, 3000)
            .unwrap();
        t2.apply(&batch(vec![], vec![], &[(4, 4.0)]), &honor, &head, 4000)
            .unwrap();
        assert_eq!(last_by_a(&head), vec![("1".to_string(), 4.0)]);
    }

    #[test]
    fn a_series_forgotten_by_the_batch_reporting_it_goes_stale_unless_reported_again() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let mut b = two_series();
        b.forget = vec![1, 2];
        t.apply(&b, &target(), &head, 1000).unwrap();
        assert_eq!(t.len(), 0);
        // Id 1 now names the series id 2 had; a=1 is reported by nobody.
        let b = batch(vec![], vec![series(1, "m", &[("a", "2")])], &[(1, 5.0)]);
        let a = t.apply(&b, &target(), &head, 2000).unwrap();
        assert_eq!(a.stale_marked, 1);
        let got = last_by_a(&head);
        assert!(got[0].0 == "1" && is_stale_nan(got[0].1), "{got:?}");
        assert_eq!(got[1], ("2".to_string(), 5.0));
        let a = t
            .apply(&batch(vec![], vec![], &[(1, 6.0)]), &target(), &head, 3000)
            .unwrap();
        assert_eq!(a.stale_marked, 0, "marked once");
    }

    #[test]
    fn after_a_reset_what_the_new_instance_does_not_report_goes_stale() {
        let (_dir, head) = crate::storage::test_storage();
        let mut t = SeriesTable::default();
        let b = two_series();
        t.apply(&b, &target(), &head, 1000).unwrap();
        t.reset(&head);
        assert_eq!(t.len(), 0);
        // The new instance numbers its series its own way and reports a=1 only.
        let b = batch(vec![family(0, "m")], vec![series(7, "m", &[("a", "1")])], &[(7, 3.0)]);
        let a = t.apply(&b, &target(), &head, 2000).unwrap();
        assert_eq!((a.series_added, a.stale_marked), (1, 1));
        let got = last_by_a(&head);
        assert_eq!(got[0], ("1".to_string(), 3.0));
        assert!(is_stale_nan(got[1].1), "{got:?}");
        // A reset followed by a failed collection marks them all.
        t.reset(&head);
        assert_eq!(t.mark_all_stale(&head, 3000), 1);
        assert!(last_by_a(&head).iter().all(|(_, v)| is_stale_nan(*v)));
    }
}
