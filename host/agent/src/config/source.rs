//! Config files as parsed TOML with positions, and problems reported as
//! `file:line:col: message` so every mistake can be found and fixed at once.

use serde::de::{DeserializeOwned, IntoDeserializer};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// The text of one config file, for turning byte offsets into line:col.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<Self, Problem> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(Problem {
                file: path.into(),
                line: 0,
                col: 0,
                message: format!("cannot read file: {e}"),
            }),
        }
    }

    pub fn problem(&self, span: Range<usize>, message: impl Into<String>) -> Problem {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Problem {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Parses the document, collecting every syntax error.
    pub fn parse(&self, problems: &mut Vec<Problem>) -> Spanned<DeTable<'_>> {
        let (table, errors) = DeTable::parse_recoverable(&self.text);
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            problems.push(self.problem(span, format!("TOML syntax: {}", e.message().trim())));
        }
        table
    }

    /// Deserializes `table` into `T`, reporting every bad key rather than the first:
    /// each key is first deserialized on its own (so `T` must accept any subset of
    /// its keys, i.e. all fields optional or defaulted), then the whole table.
    /// Keys in `nested` are skipped here; the caller checks them with their own type.
    pub fn deserialize_all<T: DeserializeOwned>(
        &self,
        table: &Spanned<DeTable<'_>>,
        nested: &[&str],
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        if !self.check_keys::<T>(table, nested, problems) {
            return None;
        }
        let whole = Spanned::new(table.span(), DeValue::Table(table.get_ref().clone()));
        match T::deserialize(whole.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(self.problem(e.span().unwrap_or(table.span()), e.message().trim().to_string()));
                None
            }
        }
    }

    /// The per-key half of [`SourceFile::deserialize_all`]: reports every key of
    /// `table` (except `nested`) that `T` rejects; true when all are accepted.
    pub fn check_keys<T: DeserializeOwned>(
        &self,
        table: &Spanned<DeTable<'_>>,
        nested: &[&str],
        problems: &mut Vec<Problem>,
    ) -> bool {
        let before = problems.len();
        for (key, value) in table.get_ref().iter() {
            if nested.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let mut one = DeTable::new();
            one.insert(key.clone(), value.clone());
            let whole = Spanned::new(key.span().start..value.span().end, DeValue::Table(one));
            if let Err(e) = T::deserialize(whole.into_deserializer()) {
                let msg = e.message().trim().to_string();
                let span = if msg.starts_with("unknown field") {
                    key.span()
                } else {
                    e.span().unwrap_or(value.span())
                };
                problems.push(self.problem(span, msg));
            }
        }
        problems.len() == before
    }
}

/// The span of `key`'s value in `table`, or of the table itself when absent.
pub fn value_span(table: &Spanned<DeTable<'_>>, key: &str) -> Range<usize> {
    table.get_ref().get(key).map_or(table.span(), |v| v.span())
}

/// The value of `key` when it is itself a table.
pub fn subtable<'i>(table: &Spanned<DeTable<'i>>, key: &str) -> Option<Spanned<DeTable<'i>>> {
    let v = table.get_ref().get(key)?;
    match v.get_ref() {
        DeValue::Table(t) => Some(Spanned::new(v.span(), t.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct T {
        a: Option<u32>,
        b: Option<String>,
    }

    fn file(text: &str) -> SourceFile {
        SourceFile {
            path: "x.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn every_bad_key_is_reported_with_its_line() {
        let f = file("a = \"nope\"\nb = \"ok\"\nc = 1\n");
        let mut p = vec![];
        let t = f.parse(&mut p);
        assert!(f.deserialize_all::<T>(&t, &[], &mut p).is_none());
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((p[0].line, p[1].line), (1, 3));
        assert!(p[1].message.contains("unknown field `c`"), "{}", p[1].message);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let f = file("a = 1\nb = [\n");
        let mut p = vec![];
        f.parse(&mut p);
        assert!(!p.is_empty());
        assert!(p[0].line >= 2, "{:?}", p[0]);
    }

    #[test]
    fn good_tables_deserialize() {
        let f = file("a = 3\nb = \"x\"\n");
        let mut p = vec![];
        let t = f.parse(&mut p);
        let v: T = f.deserialize_all(&t, &[], &mut p).unwrap();
        assert_eq!((v.a, v.b.as_deref()), (Some(3), Some("x")));
    }
}
