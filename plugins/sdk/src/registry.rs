//! Series registration and batch encoding: turns typed samples into the compact wire.

use crate::bindings::sonde::plugin::types::{Batch, Error, Family as WireFamily, Label, MetricKind, Series};
use crate::text;
use hashbrown::HashTable;
use std::collections::HashMap;

/// "Stamp with the collection's start time" in `batch.timestamps`.
const NOW: i64 = i64::MIN;

/// A registered metric family, returned by [`Collection::family`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family(u32);

/// 16 bytes a series in wasm32, plus its text in [`Registry::texts`].
struct SeriesRec {
    /// The series' text ([`crate::text`]): `texts[start..start + len]`; `len` [`FREE`]:
    /// a free slot.
    start: u32,
    len: u32,
    /// The collection in which this series was last emitted.
    seen: u32,
    /// Unique per registration, so a handle (see [`Collection::sample_handle`]) to an
    /// id that was forgotten and reused is recognised as stale.
    generation: u32,
}

/// `SeriesRec::len` of a free slot.
const FREE: u32 = u32::MAX;

impl SeriesRec {
    fn live(&self) -> bool {
        self.len != FREE
    }

    fn text<'t>(&self, texts: &'t [u8]) -> &'t [u8] {
        if self.live() {
            &texts[self.start as usize..(self.start + self.len) as usize]
        } else {
            &[]
        }
    }
}

/// Dead text bytes tolerated before the texts are rewritten, whatever their size.
const MIN_DEAD: usize = 64 * 1024;

/// State that persists across collections of one instance.
#[derive(Default)]
pub(crate) struct Registry {
    families: HashMap<Box<str>, (u32, MetricKind)>,
    /// Series by id; free slots (see [`FREE`]) are listed in `free`.
    series: Vec<SeriesRec>,
    free: Vec<u32>,
    /// The series' texts back to back, in the order they were registered (rewritten in
    /// emission order when half of it is dead): one buffer rather than an allocation
    /// per series, read sequentially when a collection emits in its usual order.
    texts: Vec<u8>,
    /// Bytes of `texts` that belong to no series any more.
    dead: usize,
    /// Ids by [`text::hash`] of their text (4 bytes a series; a map from hash to ids
    /// took ~50).
    index: HashTable<u32>,
    epoch: u32,
    /// Series ids in the order the previous collection emitted them: most plugins
    /// emit in the same order every time, so the series at the same position is
    /// checked first, without hashing.
    last_order: Vec<u32>,
    /// Generation of the latest registration (see `SeriesRec::generation`).
    generation: u32,
    /// A text being looked up.
    scratch: Vec<u8>,
}

/// New definitions are handed to the host (`host.define`) this many at a time rather
/// than all in the batch: a first collection of 100k series would otherwise hold every
/// definition in the guest's memory at once (~200 bytes a series in wasm32), and linear
/// memory never shrinks.
const DEFINE_CHUNK: usize = 256;

impl Registry {
    fn text(&self, id: u32) -> &[u8] {
        self.series[id as usize].text(&self.texts)
    }

    fn is_live(&self, id: u32) -> bool {
        self.series.get(id as usize).is_some_and(SeriesRec::live)
    }

    /// The live series the previous collection emitted at position `pos`.
    fn at_position(&self, pos: usize) -> Option<u32> {
        self.last_order.get(pos).copied().filter(|&id| self.is_live(id))
    }

    /// The live series whose text is `t`.
    fn find(&self, t: &[u8], hash: u64) -> Option<u32> {
        self.index.find(hash, |&id| text::same(self.text(id), t)).copied()
    }

    /// Registers the series of text `t` (not registered yet) and returns its id.
    fn insert(&mut self, t: &[u8], hash: u64) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        let rec = SeriesRec {
            start: self.texts.len() as u32,
            len: t.len() as u32,
            seen: 0,
            generation: self.generation,
        };
        self.texts.extend_from_slice(t);
        let id = match self.free.pop() {
            Some(id) => {
                self.series[id as usize] = rec;
                id
            }
            None => {
                self.series.push(rec);
                (self.series.len() - 1) as u32
            }
        };
        let (series, texts) = (&self.series, &self.texts);
        self.index
            .insert_unique(hash, id, |&i| text::hash(series[i as usize].text(texts)));
        id
    }

    /// Forgets the live series `id`: out of the index, its slot and text freed.
    fn release(&mut self, id: u32) {
        let rec = &self.series[id as usize];
        if !rec.live() {
            return;
        }
        let hash = text::hash(rec.text(&self.texts));
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        let rec = &mut self.series[id as usize];
        self.dead += rec.len as usize;
        rec.len = FREE;
        self.free.push(id);
    }

    /// Rewrites `texts` with only the live texts, in the order of `order` (the ids of
    /// the collection just finished, which emitted every live series once).
    fn compact_texts(&mut self, order: &[u32]) {
        if self.dead <= MIN_DEAD || self.dead <= self.texts.len() / 2 {
            return;
        }
        let mut texts = Vec::with_capacity(self.texts.len() - self.dead);
        for &id in order {
            let rec = &mut self.series[id as usize];
            let start = texts.len() as u32;
            texts.extend_from_slice(rec.text(&self.texts));
            rec.start = start;
        }
        debug_assert_eq!(texts.len(), self.texts.len() - self.dead);
        self.texts = texts;
        self.dead = 0;
    }
}

/// The output of one collection, handed to [`crate::Plugin::collect`].
pub struct Collection<'a> {
    reg: &'a mut Registry,
    batch: Batch,
    error: Option<Error>,
    /// Series emitted more than once in this collection (the first value is kept).
    duplicates: Vec<String>,
    /// Definitions of this collection already handed to the host, to undo on failure.
    handed: Handed,
}

#[derive(Default)]
struct Handed {
    series: Vec<u32>,
    families: Vec<String>,
    /// Natively there is no host: the definitions wait here and go back in front of
    /// the batch in `finish`, as the host puts them.
    #[cfg(not(target_arch = "wasm32"))]
    held: (Vec<WireFamily>, Vec<Series>),
}

impl<'a> Collection<'a> {
    pub(crate) fn new(reg: &'a mut Registry) -> Self {
        reg.epoch = reg.epoch.wrapping_add(1);
        // Sized for as many samples as last time: grown by doubling, the batch would
        // take up to twice that and leave the smaller copies behind in linear memory.
        let expected = reg.last_order.len();
        Collection {
            reg,
            batch: Batch {
                families: Vec::new(),
                series: Vec::new(),
                forget: Vec::new(),
                ids: Vec::with_capacity(expected),
                values: Vec::with_capacity(expected),
                timestamps: Vec::new(),
                target_errors: Vec::new(),
            },
            error: None,
            duplicates: Vec::new(),
            handed: Handed::default(),
        }
    }

    /// Hands the definitions made so far to the host (`host.define`), which treats
    /// them as part of this collection's batch.
    fn hand_over(&mut self) {
        self.handed.series.extend(self.batch.series.iter().map(|s| s.id));
        self.handed
            .families
            .extend(self.batch.families.iter().map(|f| f.name.clone()));
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::sonde::plugin::host::define(&self.batch.families, &self.batch.series);
            self.batch.families.clear();
            self.batch.series.clear();
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.handed.held.0.append(&mut self.batch.families);
            self.handed.held.1.append(&mut self.batch.series);
        }
    }

    /// Says that about `samples` samples, whose series texts (see [`crate::text`])
    /// take about `text_bytes`, will be emitted in this collection (a page's line
    /// count, say), so the registry and the batch grow once, to that size, rather than
    /// by doubling: linear memory never shrinks, so what doubling over-allocates and
    /// the copies it leaves behind stay the instance's for good.
    pub fn reserve_samples(&mut self, samples: usize, text_bytes: usize) {
        let reg = &mut *self.reg;
        // New series fill the free slots first.
        reg.series.reserve_exact(samples.saturating_sub(reg.series.len()));
        reg.texts
            .reserve_exact(text_bytes.saturating_sub(reg.texts.len() - reg.dead));
        let (series, texts) = (&reg.series, &reg.texts);
        reg.index.reserve(samples.saturating_sub(reg.index.len()), |&i| {
            text::hash(series[i as usize].text(texts))
        });
        let b = &mut self.batch;
        b.ids.reserve_exact(samples.saturating_sub(b.ids.len()));
        b.values.reserve_exact(samples.saturating_sub(b.values.len()));
    }

    /// Reports that the peer this plugin watches is in trouble (down, refused the
    /// credentials, did not answer in time) while the collection still has something
    /// true to say, such as `pg_up 0`. The samples are stored, and the host marks the
    /// target down with `msg` as its `lastError` (a *degraded* collection, see
    /// `target-errors` in wit/plugin.wit). Name the peer in `msg`. Returning `Err`
    /// instead fails the collection and stores nothing.
    pub fn target_error(&mut self, msg: impl Into<String>) {
        self.batch.target_errors.push(msg.into());
    }

    /// Registers (or looks up) a metric family. `name` is the text-format family
    /// name: counters keep `_total`.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) -> Family {
        self.family_with_unit(name, kind, help, "")
    }

    pub fn family_with_unit(&mut self, name: &str, kind: MetricKind, help: &str, unit: &str) -> Family {
        if let Some((id, k)) = self.reg.families.get(name) {
            if *k != kind && self.error.is_none() {
                self.error = Some(Error::Failed(format!(
                    "metric family {name} registered as {k:?} and again as {kind:?}"
                )));
            }
            return Family(*id);
        }
        let id = self.reg.families.len() as u32;
        self.reg.families.insert(name.into(), (id, kind));
        self.batch.families.push(WireFamily {
            id,
            name: name.into(),
            kind,
            help: help.into(),
            unit: unit.into(),
        });
        Family(id)
    }

    /// Emits one sample of `family`. `name` is the sample name (the family name, or
    /// e.g. `<family>_bucket`). Emitting the same series twice in one collection keeps
    /// the first value and logs a warning (as Prometheus drops duplicate samples).
    pub fn sample(&mut self, family: Family, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(family, name, labels, value, NOW);
    }

    /// Like [`Collection::sample`] with an explicit timestamp (ms since the epoch).
    pub fn sample_at(&mut self, family: Family, name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: i64) {
        self.push(family, name, labels, value, timestamp_ms);
    }

    /// A gauge family with one sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let f = self.family(name, MetricKind::Gauge, help);
        self.sample(f, name, labels, value);
    }

    /// A counter family with one sample; `name` should end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let f = self.family(name, MetricKind::Counter, help);
        self.sample(f, name, labels, value);
    }

    /// An "info" metric: a gauge of value 1 carrying facts in its labels, as
    /// node_exporter's `node_uname_info`.
    pub fn info(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) {
        self.gauge(name, help, labels, 1.0);
    }

    /// A histogram: `buckets` are (upper bound, cumulative count) pairs; the `+Inf`
    /// bucket is added from `count` when missing.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, f64)],
        sum: f64,
        count: f64,
    ) {
        let f = self.family(name, MetricKind::Histogram, help);
        let bucket_name = format!("{name}_bucket");
        let bounds: Vec<String> = buckets.iter().map(|(le, _)| format_le(*le)).collect();
        for ((_, n), le) in buckets.iter().zip(&bounds) {
            self.sample(f, &bucket_name, &with_extra(labels, "le", le), *n);
        }
        if !buckets.iter().any(|(le, _)| *le == f64::INFINITY) {
            self.sample(f, &bucket_name, &with_extra(labels, "le", "+Inf"), count);
        }
        self.sample(f, &format!("{name}_sum"), labels, sum);
        self.sample(f, &format!("{name}_count"), labels, count);
    }

    /// A summary: `quantiles` are (quantile, value) pairs.
    pub fn summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: f64,
    ) {
        let f = self.family(name, MetricKind::Summary, help);
        for (q, v) in quantiles {
            let q = format_le(*q);
            self.sample(f, name, &with_extra(labels, "quantile", &q), *v);
        }
        self.sample(f, &format!("{name}_sum"), labels, sum);
        self.sample(f, &format!("{name}_count"), labels, count);
    }

    /// Like [`Collection::sample_at`] (`timestamp_ms` = `None`: the collection's
    /// time), and returns an opaque handle of the series for
    /// [`Collection::sample_by_handle`]. For plugins that can recognise a series
    /// cheaply themselves (a scrape keyed by the raw series text) and so skip the
    /// lookup by name and labels.
    pub fn sample_handle(
        &mut self,
        family: Family,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> u64 {
        let id = self.lookup_or_register(family.0, name, labels);
        self.push_id(id, value, timestamp_ms.unwrap_or(NOW));
        self.handle_of(id)
    }

    fn handle_of(&self, id: u32) -> u64 {
        (self.reg.series[id as usize].generation as u64) << 32 | id as u64
    }

    /// Emits a sample of the series `handle` (from [`Collection::sample_handle`]).
    /// Returns false, emitting nothing, when the handle is stale: the series was
    /// released (not emitted in some collection, or registered by one that failed);
    /// register it again with `sample_handle`.
    pub fn sample_by_handle(&mut self, handle: u64, value: f64, timestamp_ms: Option<i64>) -> bool {
        let (id, generation) = (handle as u32, (handle >> 32) as u32);
        if !self.reg.is_live(id) || self.reg.series[id as usize].generation != generation {
            return false;
        }
        self.push_id(id, value, timestamp_ms.unwrap_or(NOW));
        true
    }

    /// Emits a sample of the registered series whose text (see [`crate::text`]:
    /// `name{label="value",...}`, labels in the order they were registered, values
    /// escaped) is `series`. Returns false, emitting nothing, when no such series is
    /// registered (or it was released). A scrape whose page prints series as they
    /// were registered finds them by their raw text, without parsing their labels
    /// and without a text of its own.
    pub fn sample_by_text(&mut self, series: &[u8], value: f64, timestamp_ms: Option<i64>) -> bool {
        let at_position = self
            .reg
            .at_position(self.batch.ids.len())
            .filter(|&id| text::same(self.reg.text(id), series));
        let Some(id) = at_position.or_else(|| self.reg.find(series, text::hash(series))) else {
            return false;
        };
        self.push_id(id, value, timestamp_ms.unwrap_or(NOW));
        true
    }

    /// Emits a sample of the series the previous collection emitted at this position,
    /// when `read` finds its value: `read` gets the series' text (see [`crate::text`])
    /// and returns the value when the input has that series next (as
    /// `sonde_scrape`'s `Lines::next_sample_of` does). Returns false, emitting
    /// nothing, when there is no such series or `read` returns `None`. For a source
    /// that prints its series in the same order every time, this finds them without
    /// hashing and without splitting the line first.
    pub fn sample_in_order(&mut self, read: impl FnOnce(&[u8]) -> Option<f64>) -> bool {
        let Some(id) = self.reg.at_position(self.batch.ids.len()) else {
            return false;
        };
        let Some(value) = read(self.reg.text(id)) else {
            return false;
        };
        self.push_id(id, value, NOW);
        true
    }

    /// The text of the live series `handle` (see [`crate::text`]).
    pub fn series_text(&self, handle: u64) -> Option<&[u8]> {
        let (id, generation) = (handle as u32, (handle >> 32) as u32);
        (self.reg.is_live(id) && self.reg.series[id as usize].generation == generation).then(|| self.reg.text(id))
    }

    fn push(&mut self, family: Family, name: &str, labels: &[(&str, &str)], value: f64, ts: i64) {
        let id = self.lookup_or_register(family.0, name, labels);
        self.push_id(id, value, ts);
    }

    fn push_id(&mut self, id: u32, value: f64, ts: i64) {
        if ts != NOW && self.batch.timestamps.len() < self.batch.ids.len() {
            self.batch.timestamps.resize(self.batch.ids.len(), NOW);
        }
        let rec = &mut self.reg.series[id as usize];
        debug_assert!(rec.live());
        if rec.seen == self.reg.epoch {
            if self.duplicates.len() < 5 {
                self.duplicates
                    .push(String::from_utf8_lossy(self.reg.text(id)).into_owned());
            }
            return;
        }
        rec.seen = self.reg.epoch;
        self.batch.ids.push(id);
        self.batch.values.push(value);
        if !self.batch.timestamps.is_empty() || ts != NOW {
            self.batch.timestamps.push(ts);
        }
    }

    fn lookup_or_register(&mut self, family: u32, name: &str, labels: &[(&str, &str)]) -> u32 {
        if let Some(id) = self.reg.at_position(self.batch.ids.len())
            && text::matches(self.reg.text(id), name, labels)
        {
            return id;
        }
        let mut t = std::mem::take(&mut self.reg.scratch);
        t.clear();
        text::render(&mut t, name, labels);
        let hash = text::hash(&t);
        let id = match self.reg.find(&t, hash) {
            Some(id) => id,
            None => self.register(family, name, labels, &t, hash),
        };
        self.reg.scratch = t;
        id
    }

    /// Registers a new series and queues its definition for the host.
    fn register(&mut self, family: u32, name: &str, labels: &[(&str, &str)], t: &[u8], hash: u64) -> u32 {
        let id = self.reg.insert(t, hash);
        self.batch.series.push(Series {
            id,
            family,
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        });
        if self.batch.series.len() >= DEFINE_CHUNK {
            self.hand_over();
        }
        id
    }

    /// Ends the collection: releases series not emitted this time and returns the
    /// batch. On error, the definitions made during this collection are undone: the
    /// host never saw them, so later batches must define them again.
    pub(crate) fn finish(mut self, result: Result<(), Error>) -> Result<Batch, Error> {
        if let Err(e) = result.and(self.error.take().map_or(Ok(()), Err)) {
            self.rollback();
            return Err(e);
        }
        // Natively (a plugin's unit tests) there is no host to log to.
        if cfg!(target_arch = "wasm32") && !self.duplicates.is_empty() {
            crate::log::warn(&format!(
                "series emitted more than once in one collection (first value kept): {}",
                self.duplicates.join(", ")
            ));
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (families, series) = std::mem::take(&mut self.handed.held);
            self.batch.families.splice(0..0, families);
            self.batch.series.splice(0..0, series);
        }
        if !self.batch.timestamps.is_empty() && self.batch.timestamps.len() < self.batch.ids.len() {
            self.batch.timestamps.resize(self.batch.ids.len(), NOW);
        }
        let epoch = self.reg.epoch;
        for id in 0..self.reg.series.len() as u32 {
            let rec = &self.reg.series[id as usize];
            if rec.live() && rec.seen != epoch {
                self.reg.release(id);
                self.batch.forget.push(id);
            }
        }
        self.reg.compact_texts(&self.batch.ids);
        self.reg.last_order.clone_from(&self.batch.ids);
        Ok(self.batch)
    }
}

/// Collections outside the component runtime, for a plugin's native unit tests and
/// benchmarks (the runtime makes the [`Collection`] of a component). Get one from
/// [`Collection::native_registry`].
#[derive(Default)]
pub struct NativeRegistry(Registry);

impl NativeRegistry {
    /// Runs one collection, as the runtime's `collect` does.
    pub fn collect(&mut self, f: impl FnOnce(&mut Collection) -> Result<(), Error>) -> Result<Batch, Error> {
        let mut c = Collection::new(&mut self.0);
        let result = f(&mut c);
        c.finish(result)
    }
}

impl Collection<'_> {
    /// A registry for [`NativeRegistry::collect`], in native tests and benchmarks.
    pub fn native_registry() -> NativeRegistry {
        NativeRegistry::default()
    }

    /// Undoes the registrations of a failed collection, those handed over included:
    /// the host discards them with the batch.
    fn rollback(&mut self) {
        let ids = self
            .handed
            .series
            .iter()
            .copied()
            .chain(self.batch.series.iter().map(|s| s.id));
        for id in ids {
            self.reg.release(id);
        }
        let names = self
            .handed
            .families
            .iter()
            .chain(self.batch.families.iter().map(|f| &f.name));
        for name in names {
            self.reg.families.remove(name.as_str());
        }
    }
}

fn with_extra<'l>(labels: &[(&'l str, &'l str)], name: &'l str, value: &'l str) -> Vec<(&'l str, &'l str)> {
    let mut v = Vec::with_capacity(labels.len() + 1);
    v.extend_from_slice(labels);
    v.push((name, value));
    v
}

/// Formats a bucket bound or quantile the way Prometheus client libraries do
/// (`0.005`, `1`, `+Inf`).
pub fn format_le(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(reg: &mut Registry, f: impl FnOnce(&mut Collection)) -> Result<Batch, Error> {
        let mut c = Collection::new(reg);
        f(&mut c);
        c.finish(Ok(()))
    }

    const LONG: &str = "a value long enough for a few dozen bytes";

    #[test]
    fn series_are_found_by_their_text_and_texts_are_rewritten_when_half_dead() {
        let text = |i: usize| format!(r#"m{{i="v\"{i}",x="{LONG}"}}"#);
        let mut reg = Registry::default();
        let mut handles = Vec::new();
        let emit = |c: &mut Collection, from: usize, to: usize, handles: &mut Vec<u64>| {
            let f = c.family("m", MetricKind::Gauge, "");
            for i in from..to {
                let v = format!("v\"{i}");
                handles.push(c.sample_handle(f, "m", &[("i", &v), ("x", LONG)], i as f64, None));
            }
        };
        collect(&mut reg, |c| emit(c, 0, 4000, &mut handles)).unwrap();
        assert_eq!(
            Collection::new(&mut reg).series_text(handles[7]),
            Some(text(7).as_bytes())
        );
        // By text: at the same position, elsewhere, and unknown texts.
        let b = collect(&mut reg, |c| {
            assert!(c.sample_by_text(text(0).as_bytes(), 10.0, None));
            assert!(c.sample_by_text(text(2).as_bytes(), 12.0, Some(5)));
            assert!(
                c.sample_by_text(text(0).as_bytes(), 11.0, None),
                "a duplicate: first kept"
            );
            assert!(
                !c.sample_by_text(format!(r#"m{{x="{LONG}",i="v\"0"}}"#).as_bytes(), 1.0, None),
                "another order"
            );
            assert!(!c.sample_by_text(b"m", 1.0, None));
            for i in 3000..4000 {
                assert!(c.sample_by_text(text(i).as_bytes(), i as f64, None), "{i}");
            }
        })
        .unwrap();
        assert_eq!(b.ids[..2], [0, 2]);
        assert_eq!(
            (b.values[..2].to_vec(), b.timestamps[..2].to_vec()),
            (vec![10.0, 12.0], vec![NOW, 5])
        );
        assert_eq!(b.forget.len(), 4000 - 1002);
        // 2998 of 4000 texts are dead: rewritten in the emission order just seen.
        assert_eq!(reg.dead, 0);
        let live: Vec<u8> = b.ids.iter().flat_map(|&id| reg.text(id).to_vec()).collect();
        assert_eq!(reg.texts, live);
        assert_eq!(Collection::new(&mut reg).series_text(handles[1]), None, "released");
        let b2 = collect(&mut reg, |c| {
            for i in (3000..4000).rev() {
                assert!(c.sample_by_text(text(i).as_bytes(), 0.0, None));
            }
            assert!(c.sample_by_handle(handles[0], 1.0, None));
        })
        .unwrap();
        assert!(b2.forget.contains(&2) && b2.series.is_empty());
    }

    #[test]
    fn reserve_samples_sizes_the_registry_and_batch_once() {
        let mut reg = Registry::default();
        let texts: usize = (0..1000).map(|i| format!("m{{i=\"{i}\"}}").len()).sum();
        let batch = collect(&mut reg, |c| {
            c.reserve_samples(1000, texts);
            let f = c.family("m", MetricKind::Gauge, "");
            for i in 0..1000 {
                c.sample(f, "m", &[("i", &i.to_string())], 1.0);
            }
        })
        .unwrap();
        assert_eq!(
            (reg.series.capacity(), batch.ids.capacity(), batch.values.capacity()),
            (1000, 1000, 1000)
        );
        assert_eq!(
            (reg.texts.len(), reg.texts.capacity()),
            (texts, texts),
            "one allocation"
        );
        // Later collections start with the batch sized as the last one.
        let batch = collect(&mut reg, |c| {
            let f = c.family("m", MetricKind::Gauge, "");
            for i in 0..1000 {
                c.sample(f, "m", &[("i", &i.to_string())], 2.0);
            }
        })
        .unwrap();
        assert_eq!((batch.ids.capacity(), batch.series.len()), (1000, 0));
    }

    #[test]
    fn series_are_registered_once_then_sent_as_ids() {
        let mut reg = Registry::default();
        let emit = |c: &mut Collection| {
            c.gauge("a", "h", &[("x", "1")], 1.0);
            c.gauge("a", "h", &[("x", "2")], 2.0);
        };
        let b1 = collect(&mut reg, emit).unwrap();
        assert_eq!(b1.families.len(), 1);
        assert_eq!(b1.series.len(), 2);
        assert_eq!(b1.ids.len(), 2);
        let b2 = collect(&mut reg, emit).unwrap();
        assert!(b2.families.is_empty() && b2.series.is_empty() && b2.forget.is_empty());
        assert_eq!(b2.ids, b1.ids);
        assert_eq!(b2.values, vec![1.0, 2.0]);
        assert!(b2.timestamps.is_empty());
    }

    #[test]
    fn a_changed_emission_order_finds_the_same_series() {
        let mut reg = Registry::default();
        let b1 = collect(&mut reg, |c| {
            c.gauge("a", "h", &[("x", "1")], 1.0);
            c.gauge("a", "h", &[("x", "2")], 2.0);
        })
        .unwrap();
        let b2 = collect(&mut reg, |c| {
            c.gauge("a", "h", &[("x", "2")], 2.0);
            c.gauge("a", "h", &[("x", "1")], 1.0);
            c.gauge("a", "h", &[("x", "3")], 3.0);
        })
        .unwrap();
        assert_eq!(b2.ids[..2], [b1.ids[1], b1.ids[0]]);
        assert_eq!(b2.series.len(), 1, "only x=3 is new");
    }

    #[test]
    fn absent_series_are_forgotten_and_ids_reused() {
        let mut reg = Registry::default();
        let b1 = collect(&mut reg, |c| {
            c.gauge("a", "h", &[("x", "1")], 1.0);
            c.gauge("a", "h", &[("x", "2")], 2.0);
        })
        .unwrap();
        let b2 = collect(&mut reg, |c| c.gauge("a", "h", &[("x", "2")], 2.0)).unwrap();
        assert_eq!(b2.forget, vec![b1.ids[0]]);
        let b3 = collect(&mut reg, |c| {
            c.gauge("a", "h", &[("x", "2")], 2.0);
            c.gauge("a", "h", &[("x", "3")], 3.0);
        })
        .unwrap();
        assert_eq!(b3.series.len(), 1);
        assert_eq!(b3.series[0].id, b1.ids[0], "freed id is reused");
    }

    #[test]
    fn duplicate_series_keep_the_first_value() {
        let mut reg = Registry::default();
        let mut c = Collection::new(&mut reg);
        c.gauge("a", "h", &[], 1.0);
        c.gauge("a", "h", &[], 2.0);
        c.gauge("b", "h", &[("x", "1")], 1.0);
        c.gauge("b", "h", &[("x", "1")], 2.0);
        assert_eq!(c.duplicates, vec!["a".to_string(), "b{x=\"1\"}".to_string()]);
        assert_eq!(c.batch.values, vec![1.0, 1.0]);
    }

    #[test]
    fn handles_skip_the_lookup_until_the_series_is_released() {
        let mut reg = Registry::default();
        let mut handles = Vec::new();
        collect(&mut reg, |c| {
            let f = c.family("a", MetricKind::Gauge, "h");
            handles.push(c.sample_handle(f, "a", &[("x", "1")], 1.0, None));
            handles.push(c.sample_handle(f, "a", &[("x", "2")], 2.0, Some(5)));
        })
        .unwrap();
        let b = collect(&mut reg, |c| {
            assert!(c.sample_by_handle(handles[1], 20.0, None));
            assert!(
                c.sample_by_handle(handles[1], 21.0, None),
                "a duplicate: kept the first"
            );
        })
        .unwrap();
        assert_eq!((b.ids.len(), b.values[0]), (1, 20.0));
        assert_eq!(b.forget.len(), 1, "x=1 was not emitted");
        let b = collect(&mut reg, |c| {
            assert!(!c.sample_by_handle(handles[0], 1.0, None), "released");
            let f = c.family("a", MetricKind::Gauge, "h");
            let h = c.sample_handle(f, "a", &[("x", "3")], 3.0, None);
            assert_ne!(h, handles[0], "the reused id has a new generation");
            assert!(c.sample_by_handle(handles[1], 2.0, Some(7)));
        })
        .unwrap();
        assert_eq!(b.timestamps, vec![NOW, 7]);
    }

    #[test]
    fn a_failed_collection_leaves_no_definitions_behind() {
        let mut reg = Registry::default();
        collect(&mut reg, |c| c.gauge("a", "h", &[], 1.0)).unwrap();
        let mut c = Collection::new(&mut reg);
        c.gauge("a", "h", &[], 1.0);
        c.gauge("b", "h", &[], 2.0);
        assert!(c.finish(Err(Error::Failed("boom".into()))).is_err());
        let b = collect(&mut reg, |c| {
            c.gauge("a", "h", &[], 1.0);
            c.gauge("b", "h", &[], 2.0);
        })
        .unwrap();
        let names: Vec<&str> = b.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b"], "b is defined again, a was known before");
        assert_eq!(b.series.len(), 1);
        assert_eq!(b.series[0].name, "b");
    }

    /// Many new series in one collection: emitted over several `host.define` calls (held
    /// natively), the batch still defines each exactly once, before its samples.
    fn emit_many(c: &mut Collection, n: usize) {
        let f = c.family("m", MetricKind::Gauge, "h");
        for i in 0..n {
            let v = i.to_string();
            c.sample(f, "m", &[("i", &v)], i as f64);
        }
    }

    #[test]
    fn definitions_handed_over_in_pieces_make_one_whole_batch() {
        let n = DEFINE_CHUNK * 2 + 7;
        let mut reg = Registry::default();
        let b = collect(&mut reg, |c| {
            emit_many(c, n / 2);
            assert!(c.handed.series.len() >= DEFINE_CHUNK, "handed over while collecting");
            emit_many(c, n);
        })
        .unwrap();
        assert_eq!(b.families.len(), 1);
        let mut defined: Vec<u32> = b.series.iter().map(|s| s.id).collect();
        defined.sort_unstable();
        defined.dedup();
        assert_eq!(defined.len(), n);
        assert_eq!(b.series.len(), n, "each series defined once");
        assert_eq!(b.ids.len(), n, "the second emission of a series is a duplicate");
        let again = collect(&mut reg, |c| emit_many(c, n)).unwrap();
        assert!(again.series.is_empty() && again.families.is_empty());
        assert_eq!(again.ids, b.ids);
    }

    #[test]
    fn a_failed_collection_takes_back_what_it_handed_over() {
        let n = DEFINE_CHUNK * 3;
        let mut reg = Registry::default();
        let mut c = Collection::new(&mut reg);
        emit_many(&mut c, n);
        assert!(c.finish(Err(Error::Failed("boom".into()))).is_err());
        let b = collect(&mut reg, |c| emit_many(c, n)).unwrap();
        assert_eq!(b.families.len(), 1, "the family is defined again");
        assert_eq!(b.series.len(), n, "every series is defined again");
        let mut ids = b.ids.clone();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..n as u32).collect::<Vec<_>>(),
            "the failed collection's ids were freed"
        );
    }

    #[test]
    fn target_errors_travel_with_the_samples() {
        let mut reg = Registry::default();
        let b = collect(&mut reg, |c| {
            c.gauge("pg_up", "h", &[], 0.0);
            c.target_error("postgres: connection refused");
        })
        .unwrap();
        assert_eq!(b.values, vec![0.0]);
        assert_eq!(b.target_errors, vec!["postgres: connection refused".to_string()]);
        let b = collect(&mut reg, |c| c.gauge("pg_up", "h", &[], 1.0)).unwrap();
        assert!(b.target_errors.is_empty(), "each collection starts healthy");
    }

    #[test]
    fn explicit_timestamps_fill_the_rest_with_now() {
        let mut reg = Registry::default();
        let b = collect(&mut reg, |c| {
            let f = c.family("a", MetricKind::Gauge, "h");
            c.sample(f, "a", &[("x", "1")], 1.0);
            c.sample_at(f, "a", &[("x", "2")], 2.0, 1000);
            c.sample(f, "a", &[("x", "3")], 3.0);
        })
        .unwrap();
        assert_eq!(b.timestamps, vec![NOW, 1000, NOW]);
    }

    #[test]
    fn histogram_adds_inf_bucket_sum_and_count() {
        let mut reg = Registry::default();
        let b = collect(&mut reg, |c| {
            c.histogram("h", "x", &[], &[(0.5, 1.0), (1.0, 3.0)], 2.5, 4.0)
        })
        .unwrap();
        let names: Vec<String> = b
            .series
            .iter()
            .map(|s| {
                format!(
                    "{}{:?}",
                    s.name,
                    s.labels.iter().map(|l| l.value.clone()).collect::<Vec<_>>()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "h_bucket[\"0.5\"]",
                "h_bucket[\"1\"]",
                "h_bucket[\"+Inf\"]",
                "h_sum[]",
                "h_count[]"
            ]
        );
        assert_eq!(b.values, vec![1.0, 3.0, 4.0, 2.5, 4.0]);
    }
}
