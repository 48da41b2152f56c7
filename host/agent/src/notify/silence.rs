//! Silences (Alertmanager API v2 shape), persisted as JSON in `<data_dir>/notifier/`.

use super::matcher::Matcher;
use super::persist;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One matcher as the v2 API writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    /// Milliseconds since the epoch (the API speaks RFC 3339).
    pub starts_at: i64,
    pub ends_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.ends_at <= now_ms {
            "expired"
        } else if self.starts_at > now_ms {
            "pending"
        } else {
            "active"
        }
    }

    pub fn compiled(&self) -> Result<Vec<Matcher>, String> {
        self.matchers
            .iter()
            .map(|m| Matcher::new(&m.name, &m.value, m.is_regex, m.is_equal))
            .collect()
    }
}

/// Expired silences are kept this long (for the API), then dropped.
const RETENTION_MS: i64 = 5 * 24 * 3600 * 1000;

pub struct Silences {
    path: PathBuf,
    pub all: BTreeMap<String, (Silence, Vec<Matcher>)>,
}

impl Silences {
    pub fn load(dir: &std::path::Path) -> Silences {
        let path = dir.join("silences.json");
        let list: Vec<Silence> = persist::read(&path).unwrap_or_default();
        let all = list
            .into_iter()
            .filter_map(|s| {
                let m = s.compiled().ok()?;
                Some((s.id.clone(), (s, m)))
            })
            .collect();
        Silences { path, all }
    }

    fn save(&self) {
        let list: Vec<&Silence> = self.all.values().map(|(s, _)| s).collect();
        persist::write(&self.path, &list);
    }

    /// Creates or (same id) replaces a silence; returns its id.
    pub fn upsert(&mut self, mut s: Silence, now_ms: i64) -> Result<String, String> {
        if s.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if s.ends_at <= s.starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        let m = s.compiled()?;
        if s.id.is_empty() || !self.all.contains_key(&s.id) {
            s.id = new_id();
        }
        s.updated_at = now_ms;
        let id = s.id.clone();
        self.all.retain(|_, (s, _)| s.ends_at + RETENTION_MS > now_ms);
        self.all.insert(id.clone(), (s, m));
        self.save();
        Ok(id)
    }

    /// Expires a silence; false when unknown.
    pub fn expire(&mut self, id: &str, now_ms: i64) -> bool {
        let Some((s, _)) = self.all.get_mut(id) else {
            return false;
        };
        if s.ends_at > now_ms {
            s.ends_at = now_ms;
            s.starts_at = s.starts_at.min(now_ms);
            s.updated_at = now_ms;
        }
        self.save();
        true
    }

    /// Ids of the active silences that match these labels.
    pub fn silencing(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Vec<String> {
        self.all
            .values()
            .filter(|(s, m)| s.state(now_ms) == "active" && super::matcher::all_match(m, labels))
            .map(|(s, _)| s.id.clone())
            .collect()
    }
}

/// A random UUID (v4 layout); the randomness comes from std's per-process hash keys.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.finish()
    };
    let (a, b) = (part(), part());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
