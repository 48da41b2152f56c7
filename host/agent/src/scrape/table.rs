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

/// 16 bytes with its id in the map (a round number wraps after 2^32 collections).
struct SeriesEntry {
    sref: SeriesRef,
    /// The collection in which the series was last reported.
    seen: u32,
}

#[derive(Default)]
pub struct SeriesTable {
    families: IdSet<u32>,
    series: IdMap<u32, SeriesEntry>,
    /// Storage ref → plugin id, to catch two ids with the same label set.
    by_ref: IdMap<SeriesRef, u32>,
    /// Ids and refs reported by the previous successful collection.
    present: Vec<SeriesRef>,
    /// The round that reported `present`.
    present_round: u32,
    round: u32,
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
        self.series.len()
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
        let mut added = 0;
        let mut new_refs = Vec::with_capacity(batch.series.len());
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
            let sref = match head.get_or_create(&pairs) {
                Ok(r) => r,
                Err(e) => {
                    self.rollback(head, &new_refs);
                    return Err(e);
                }
            };
            if let Some(&other) = self.by_ref.get(&sref) {
                // Roll back this batch's new series before reporting.
                head.release(sref);
                self.rollback(head, &new_refs);
                return Err(format!(
                    "invalid output: series {} (id {}) has the same name and labels as id {other}",
                    s.name, s.id
                ));
            }
            self.by_ref.insert(sref, s.id);
            self.series.insert(s.id, SeriesEntry { sref, seen: 0 });
            new_refs.push((s.id, sref));
            added += 1;
        }
        // One lookup per sample: it checks the id (unknown, or twice in the batch),
        // marks the series seen and counts the ones seen last time too. A failed
        // batch leaves `seen` marks of its own round, which no later round matches.
        let mut samples = Vec::with_capacity(batch.ids.len() + self.present.len());
        let mut present = Vec::with_capacity(batch.ids.len());
        let mut seen_again = 0;
        let round = self.round;
        for (i, id) in batch.ids.iter().enumerate() {
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
                    present.push(e.sref);
                    continue;
                }
            };
            self.rollback(head, &new_refs);
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
        let gone: Vec<SeriesRef> = if seen_again == self.present.len() {
            Vec::new()
        } else {
            // Whoever has the ref now (it may have been forgotten, or its id reused).
            self.present
                .iter()
                .copied()
                .filter(|r| {
                    let entry = self.by_ref.get(r).and_then(|id| self.series.get(id));
                    entry.is_none_or(|e| e.seen != round)
                })
                .collect()
        };
        samples.extend(gone.iter().map(|r| (*r, now_ms, STALE_NAN)));
        if !batch.timestamps.is_empty() {
            hold_cuts_for_timestamps(batch, head, now_ms);
        }
        head.append(&samples)?;
        for id in &batch.forget {
            if let Some(e) = self.series.remove(id) {
                self.by_ref.remove(&e.sref);
                head.release(e.sref);
            }
        }
        self.present = present;
        self.present_round = round;
        Ok(Applied {
            samples: reported,
            series_added: added,
            stale_marked: gone.len(),
        })
    }

    /// A failed collection: every series reported last time goes stale.
    pub fn mark_all_stale(&mut self, head: &Storage, now_ms: i64) -> usize {
        let samples: Vec<_> = self.present.drain(..).map(|r| (r, now_ms, STALE_NAN)).collect();
        if let Err(e) = head.append(&samples) {
            tracing::warn!("staleness markers lost: {e}");
        }
        samples.len()
    }

    /// Forgets series this batch registered before it was found invalid.
    fn rollback(&mut self, head: &Storage, new_refs: &[(u32, SeriesRef)]) {
        for (id, r) in new_refs {
            self.series.remove(id);
            self.by_ref.remove(r);
            head.release(*r);
        }
    }

    /// The instance was re-created: its ids mean nothing any more.
    pub fn reset(&mut self, head: &Storage) {
        self.families.clear();
        for (_, e) in self.series.drain() {
            head.release(e.sref);
        }
        self.by_ref.clear();
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
            if self.series.contains_key(&s.id) || !new_series.insert(s.id) {
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
        let b = batch(
            vec![family(0, "m")],
            vec![series(1, "m", &[("a", "1")]), series(2, "m", &[("a", "2")])],
            &[(1, 1.0), (2, 2.0)],
        );
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
}
