//! The subset of Go's text/template that alert labels and annotations use in practice:
//! `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`, `.Labels`/`.Value`,
//! pipelines through `humanize`, `humanize1024`, `humanizePercentage`,
//! `humanizeDuration`, `printf`, `toUpper`, `toLower`, `title`, comparisons
//! (`eq ne lt le gt ge`), `and`/`or`/`not`, `{{ if }} {{ else if }} {{ else }} {{ end }}`
//! and `{{- -}}` trimming. Anything else (`range`, `with`, `define`, variables
//! assigned with `:=`, `query`) is a parse error that names the construct, so a rule
//! file that needs more fails `sonde check rules` instead of rendering wrongly.

use super::format::{go_g, humanize, humanize_duration, humanize1024};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// What a template sees: the alert's series labels, its value, sonde's external labels.
pub struct Data<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

type Pipeline = Vec<Command>;
/// An `if` being parsed: its condition, the nodes before it, its `then` branch once
/// `else` was seen, and `usize::MAX` for an `else if` chained onto its parent.
type Open = (Pipeline, Vec<Node>, Option<Vec<Node>>, usize);
type Command = Vec<Arg>;

#[derive(Debug, Clone)]
enum Arg {
    /// `$name.a.b` or `.a.b` (root `""`).
    Field(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Func(String),
    Sub(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Missing,
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizePercentage",
    "humanizeDuration",
    "printf",
    "toUpper",
    "toLower",
    "title",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
];
const UNSUPPORTED: &[&str] = &[
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "query",
    "first",
    "label",
    "value",
    "sortByLabel",
    "match",
    "reReplaceAll",
    "graphLink",
    "tableLink",
    "args",
    "safeHtml",
    "strvalue",
    "stripPort",
    "stripDomain",
    "toTime",
    "parseDuration",
    "humanizeTimestamp",
    "pathPrefix",
    "externalURL",
    "len",
    "index",
    "slice",
    "print",
    "println",
    "html",
    "js",
    "urlquery",
    "call",
];

impl Template {
    /// Parses `text`; `name` goes into error messages like Go's (`template: name:line: ...`).
    pub fn parse(name: &str, text: &str) -> Result<Template, String> {
        let err = |line: usize, msg: String| format!("template: {name}:{line}: {msg}");
        let pieces = split(text).map_err(|(l, m)| err(l, m))?;
        let mut stack: Vec<Open> = Vec::new();
        let mut cur: Vec<Node> = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => cur.push(Node::Text(t)),
                Piece::Action(src, line) => {
                    let toks = lex(&src).map_err(|m| err(line, m))?;
                    match toks.first() {
                        Some(Tok::Ident(k)) if k == "if" => {
                            let pl = parse_pipeline(&toks[1..]).map_err(|m| err(line, m))?;
                            stack.push((pl, std::mem::take(&mut cur), None, 0));
                        }
                        Some(Tok::Ident(k)) if k == "else" => {
                            let Some(top) = stack.last_mut() else {
                                return Err(err(line, "unexpected {{else}}".into()));
                            };
                            if top.2.is_some() {
                                return Err(err(line, "expected end; found {{else}}".into()));
                            }
                            let then = std::mem::take(&mut cur);
                            if let Some(Tok::Ident(k2)) = toks.get(1)
                                && k2 == "if"
                            {
                                // `else if c` is `else` + a nested `if` closed by the same `end`.
                                let pl = parse_pipeline(&toks[2..]).map_err(|m| err(line, m))?;
                                top.2 = Some(then);
                                stack.push((pl, Vec::new(), None, usize::MAX));
                                continue;
                            }
                            if toks.len() > 1 {
                                return Err(err(line, "unexpected tokens after else".into()));
                            }
                            top.2 = Some(then);
                        }
                        Some(Tok::Ident(k)) if k == "end" => {
                            if toks.len() > 1 {
                                return Err(err(line, "unexpected tokens after end".into()));
                            }
                            // Close the `if` and every `else if` chained onto it.
                            loop {
                                let Some((cond, before, then, kind)) = stack.pop() else {
                                    return Err(err(line, "unexpected {{end}}".into()));
                                };
                                let body = std::mem::take(&mut cur);
                                let node = match then {
                                    Some(then) => Node::If {
                                        cond,
                                        then,
                                        otherwise: body,
                                    },
                                    None => Node::If {
                                        cond,
                                        then: body,
                                        otherwise: Vec::new(),
                                    },
                                };
                                if kind == usize::MAX {
                                    // An `else if`: becomes the else branch of the parent.
                                    cur = vec![node];
                                    continue;
                                }
                                cur = before;
                                cur.push(node);
                                break;
                            }
                        }
                        Some(_) => {
                            let pl = parse_pipeline(&toks).map_err(|m| err(line, m))?;
                            cur.push(Node::Action(pl));
                        }
                        None => return Err(err(line, "missing value for command".into())),
                    }
                }
            }
        }
        if !stack.is_empty() {
            return Err(err(text.matches('\n').count() + 1, "unexpected EOF".into()));
        }
        Ok(Template { nodes: cur })
    }

    pub fn render(&self, data: &Data) -> Result<String, String> {
        let mut out = String::new();
        exec(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Parses and renders in one go (annotations are rendered once per alert per evaluation).
pub fn expand(name: &str, text: &str, data: &Data) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    Template::parse(name, text)?.render(data)
}

enum Piece {
    Text(String),
    Action(String, usize),
}

/// Splits text and `{{ }}` actions, applying `{{-` and `-}}` trimming.
fn split(text: &str) -> Result<Vec<Piece>, (usize, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        let mut t = &rest[..open];
        if trim_next {
            t = t.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            t = t.trim_end();
        }
        line += rest[..open].matches('\n').count();
        if !t.is_empty() {
            out.push(Piece::Text(t.to_string()));
        }
        let Some(close) = find_close(after) else {
            return Err((line, "unclosed action".into()));
        };
        let mut inner = &after[..close];
        if trim_left {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push(Piece::Action(inner.to_string(), line));
        }
        line += after[..close].matches('\n').count();
        rest = &after[close + 2..];
    }
    let t = if trim_next { rest.trim_start() } else { rest };
    if !t.is_empty() {
        out.push(Piece::Text(t.to_string()));
    }
    Ok(out)
}

/// The `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Var(String, Vec<String>),
    Dot(Vec<String>),
    Str(String),
    Num(f64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let word = |i: &mut usize| {
        let start = *i;
        while *i < c.len() && (c[*i].is_alphanumeric() || c[*i] == '_') {
            *i += 1;
        }
        c[start..*i].iter().collect::<String>()
    };
    let fields = |i: &mut usize| -> Vec<String> {
        let mut f = Vec::new();
        while *i < c.len() && c[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < c.len() && (c[*i].is_alphanumeric() || c[*i] == '_') {
                *i += 1;
            }
            f.push(c[start..*i].iter().collect());
        }
        f
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '$' => {
                i += 1;
                let name = word(&mut i);
                let f = fields(&mut i);
                if s[..].chars().skip(i).collect::<String>().trim_start().starts_with(":=")
                    || s.chars().skip(i).collect::<String>().trim_start().starts_with('=')
                {
                    return Err(format!(
                        "variable assignment ${name} := ... is not supported by sonde's templates"
                    ));
                }
                out.push(Tok::Var(name, f));
            }
            '.' => {
                let f = fields(&mut i);
                let f = if f.len() == 1 && f[0].is_empty() { vec![] } else { f };
                out.push(Tok::Dot(f));
            }
            '"' => {
                i += 1;
                let mut v = String::new();
                loop {
                    match c.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match c.get(i) {
                                Some('n') => v.push('\n'),
                                Some('t') => v.push('\t'),
                                Some(o) => v.push(*o),
                                None => return Err("unterminated quoted string".into()),
                            }
                        }
                        Some(o) => v.push(*o),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            '`' => {
                i += 1;
                let start = i;
                while i < c.len() && c[i] != '`' {
                    i += 1;
                }
                if i >= c.len() {
                    return Err("unterminated raw quoted string".into());
                }
                out.push(Tok::Str(c[start..i].iter().collect()));
                i += 1;
            }
            c0 if c0.is_ascii_digit()
                || ((c0 == '-' || c0 == '+') && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                    i += 1;
                }
                let t: String = c[start..i].iter().collect();
                let n = t.parse::<f64>().map_err(|_| format!("bad number syntax: {t:?}"))?;
                out.push(Tok::Num(n));
            }
            c0 if c0.is_alphabetic() || c0 == '_' => {
                let w = word(&mut i);
                out.push(Tok::Ident(w));
            }
            ':' => return Err("variable assignment (:=) is not supported by sonde's templates".into()),
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(out)
}

fn parse_pipeline(toks: &[Tok]) -> Result<Pipeline, String> {
    let mut pos = 0;
    let pl = pipeline(toks, &mut pos)?;
    if pos != toks.len() {
        return Err("unexpected \")\" in command".into());
    }
    Ok(pl)
}

fn pipeline(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err("missing command before |".into());
                }
                cmds.push(std::mem::take(&mut cmd));
            }
            Tok::Close => {
                *pos -= 1;
                break;
            }
            Tok::Open => {
                let sub = pipeline(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err("unclosed left paren".into());
                }
                *pos += 1;
                cmd.push(Arg::Sub(sub));
            }
            Tok::Var(n, f) => {
                if !matches!(n.as_str(), "labels" | "value" | "externalLabels" | "externalURL" | "") {
                    return Err(format!("undefined variable \"${n}\""));
                }
                cmd.push(Arg::Field(n.clone(), f.clone()));
            }
            Tok::Dot(f) => cmd.push(Arg::Field(String::new(), f.clone())),
            Tok::Str(s) => cmd.push(Arg::Str(s.clone())),
            Tok::Num(n) => cmd.push(Arg::Num(*n)),
            Tok::Ident(w) => match w.as_str() {
                "true" => cmd.push(Arg::Bool(true)),
                "false" => cmd.push(Arg::Bool(false)),
                w if FUNCS.contains(&w) => cmd.push(Arg::Func(w.to_string())),
                w if UNSUPPORTED.contains(&w) => {
                    return Err(format!(
                        "{w:?} is not supported by sonde's templates (supported: if/else/end, {})",
                        FUNCS.join(", ")
                    ));
                }
                "if" | "else" | "end" => return Err(format!("unexpected {{{{{w}}}}}")),
                w => return Err(format!("function {w:?} not defined")),
            },
        }
    }
    if cmd.is_empty() {
        return Err(if cmds.is_empty() {
            "missing value for command".into()
        } else {
            "missing command after |".into()
        });
    }
    cmds.push(cmd);
    Ok(cmds)
}

fn exec(nodes: &[Node], d: &Data, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&print(&run(p, d)?)),
            Node::If { cond, then, otherwise } => {
                if truthy(&run(cond, d)?) {
                    exec(then, d, out)?;
                } else {
                    exec(otherwise, d, out)?;
                }
            }
        }
    }
    Ok(())
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Str(s) => !s.is_empty(),
        Val::Num(n) => *n != 0.0,
        Val::Bool(b) => *b,
        Val::Map(m) => !m.is_empty(),
        Val::Missing => false,
    }
}

fn print(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Num(n) => go_g(*n, None),
        Val::Bool(b) => b.to_string(),
        Val::Map(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
        Val::Missing => "<no value>".into(),
    }
}

fn run(p: &Pipeline, d: &Data) -> Result<Val, String> {
    let mut prev: Option<Val> = None;
    for cmd in p {
        let mut args = Vec::with_capacity(cmd.len());
        for a in &cmd[1..] {
            args.push(arg(a, d)?);
        }
        let v = match &cmd[0] {
            Arg::Func(f) => {
                if let Some(p) = prev.take() {
                    args.push(p);
                }
                call(f, &args)?
            }
            other => {
                if !args.is_empty() || prev.is_some() {
                    return Err("can't give argument to non-function".into());
                }
                arg(other, d)?
            }
        };
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Val::Missing))
}

fn arg(a: &Arg, d: &Data) -> Result<Val, String> {
    Ok(match a {
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Num(n) => Val::Num(*n),
        Arg::Bool(b) => Val::Bool(*b),
        Arg::Sub(p) => run(p, d)?,
        Arg::Func(f) => call(f, &[])?,
        Arg::Field(root, fields) => {
            let mut f = fields.iter().map(String::as_str);
            let base = match root.as_str() {
                "labels" => Val::Map(d.labels.clone()),
                "externalLabels" => Val::Map(d.external_labels.clone()),
                "externalURL" => Val::Str(d.external_url.to_string()),
                "value" => Val::Num(d.value),
                _ => match f.next() {
                    None => return Err("the template data `.` itself cannot be printed; use .Labels or .Value".into()),
                    Some("Labels") => Val::Map(d.labels.clone()),
                    Some("ExternalLabels") => Val::Map(d.external_labels.clone()),
                    Some("ExternalURL") => Val::Str(d.external_url.to_string()),
                    Some("Value") => Val::Num(d.value),
                    Some(o) => return Err(format!("can't evaluate field {o}")),
                },
            };
            let mut v = base;
            for name in f {
                v = match v {
                    Val::Map(m) => m.get(name).map_or(Val::Missing, |s| Val::Str(s.clone())),
                    _ => return Err(format!("can't evaluate field {name}")),
                };
            }
            v
        }
    })
}

fn num(v: &Val) -> Result<f64, String> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("cannot convert {s:?} to a number")),
        Val::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        _ => Err("cannot convert a map to a number".into()),
    }
}

fn one<'a>(f: &str, args: &'a [Val]) -> Result<&'a Val, String> {
    match args {
        [a] => Ok(a),
        _ => Err(format!("wrong number of args for {f}: want 1 got {}", args.len())),
    }
}

fn call(f: &str, args: &[Val]) -> Result<Val, String> {
    Ok(match f {
        "humanize" => Val::Str(humanize(num(one(f, args)?)?)),
        "humanize1024" => Val::Str(humanize1024(num(one(f, args)?)?)),
        "humanizePercentage" => Val::Str(format!("{}%", go_g(num(one(f, args)?)? * 100.0, Some(4)))),
        "humanizeDuration" => Val::Str(humanize_duration(num(one(f, args)?)?)),
        "toUpper" => Val::Str(print(one(f, args)?).to_uppercase()),
        "toLower" => Val::Str(print(one(f, args)?).to_lowercase()),
        "title" => Val::Str(title(&print(one(f, args)?))),
        "printf" => {
            let Some((Val::Str(fmt), rest)) = args.split_first() else {
                return Err("printf needs a format string".into());
            };
            Val::Str(printf(fmt, rest))
        }
        "not" => Val::Bool(!truthy(one(f, args)?)),
        "and" => args
            .iter()
            .find(|a| !truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Missing),
        "or" => args
            .iter()
            .find(|a| truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Missing),
        cmp => {
            let [a, b] = args else {
                return Err(format!("wrong number of args for {cmp}: want 2 got {}", args.len()));
            };
            let ord = match (a, b) {
                (Val::Str(x), Val::Str(y)) => x.partial_cmp(y),
                _ => num(a)?.partial_cmp(&num(b)?),
            };
            use std::cmp::Ordering::*;
            Val::Bool(match cmp {
                "eq" => ord == Some(Equal),
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                "ge" => matches!(ord, Some(Greater | Equal)),
                _ => return Err(format!("function {cmp:?} not defined")),
            })
        }
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %%`, with
/// flags, width and precision.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek() {
            if "+-# 0".contains(f) {
                flags.push(f);
                it.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = next.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let s = match (verb, a) {
            ('s' | 'v', Val::Num(n)) if verb == 'v' => go_g(*n, prec),
            ('s' | 'v', v) => {
                let s = print(v);
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            ('q', v) => format!("{:?}", print(v)),
            ('d', v) => match num(v) {
                Ok(n) if n.fract() == 0.0 => format!("{}", n as i64),
                _ => format!("%!d({})", print(v)),
            },
            ('f' | 'F', v) => match num(v) {
                Ok(n) if n.is_finite() => format!("{:.*}", prec.unwrap_or(6), n),
                Ok(n) => go_g(n, None),
                Err(_) => format!("%!f({})", print(v)),
            },
            ('e', v) => match num(v) {
                Ok(n) if n.is_finite() => {
                    let e = format!("{:.*e}", prec.unwrap_or(6), n);
                    let (m, x) = e.split_once('e').expect("exponent");
                    let x: i32 = x.parse().expect("exponent");
                    format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs())
                }
                Ok(n) => go_g(n, None),
                Err(_) => format!("%!e({})", print(v)),
            },
            ('g', v) => match num(v) {
                Ok(n) => go_g(n, prec),
                Err(_) => format!("%!g({})", print(v)),
            },
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('x', v) => match num(v) {
                Ok(n) => format!("{:x}", n as i64),
                Err(_) => format!("%!x({})", print(v)),
            },
            (other, v) => format!("%!{other}({})", print(v)),
        };
        let s = if flags.contains('+') && matches!(a, Val::Num(n) if *n >= 0.0) && "dfeg".contains(verb) {
            format!("+{s}")
        } else {
            s
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&s);
                out.extend(std::iter::repeat_n(' ', pad));
            } else if flags.contains('0') && "dfeg".contains(verb) {
                let (sign, digits) = if s.starts_with(['-', '+']) {
                    s.split_at(1)
                } else {
                    ("", s.as_str())
                };
                out.push_str(sign);
                out.extend(std::iter::repeat_n('0', pad));
                out.push_str(digits);
            } else {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(&s);
            }
        } else {
            out.push_str(&s);
        }
    }
    for extra in next {
        let _ = write!(out, "%!(EXTRA {})", print(extra));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, value: f64) -> Result<String, String> {
        let labels: BTreeMap<String, String> = [
            ("instance".to_string(), "db-1:9187".to_string()),
            ("job".into(), "pg".into()),
        ]
        .into();
        let ext: BTreeMap<String, String> = [("site".to_string(), "paris".to_string())].into();
        expand(
            "t",
            text,
            &Data {
                labels: &labels,
                external_labels: &ext,
                external_url: "http://sonde",
                value,
            },
        )
    }

    #[test]
    fn rules_templates_render_like_prometheus() {
        let cases = [
            ("{{ $labels.instance }} is down", 0.0, "db-1:9187 is down"),
            ("{{ $value }}", 1e6, "1e+06"),
            ("{{ $value }}", 123456.0, "123456"),
            ("{{ $value }}", 0.25, "0.25"),
            ("{{ .Value }} {{ .Labels.job }}", 2.0, "2 pg"),
            ("{{ $value | humanize }}", 1234567.0, "1.235M"),
            ("{{ $value | humanize }}", 0.0012, "1.2m"),
            ("{{ humanize $value }}", 12.0, "12"),
            ("{{ $value | humanize1024 }}", 1048576.0, "1Mi"),
            ("{{ $value | humanizePercentage }}", 0.8567, "85.67%"),
            ("{{ $value | humanizeDuration }}", 93784.0, "1d 2h 3m 4s"),
            ("{{ $value | humanizeDuration }}", 0.25, "250ms"),
            ("{{ printf \"%.2f\" $value }}%", 85.1234, "85.12%"),
            ("{{ $value | printf \"%.1f\" }}", 3.0, "3.0"),
            ("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", 90.0, "high"),
            (
                "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}ok{{ end }}",
                60.0,
                "mid",
            ),
            ("{{ if eq $labels.job \"pg\" }}postgres{{ end }}", 0.0, "postgres"),
            ("a  {{- $labels.job -}}  b", 0.0, "apgb"),
            ("{{ $labels.missing }}", 0.0, "<no value>"),
            ("{{ $externalLabels.site }}", 0.0, "paris"),
            ("{{ $labels.job | toUpper }}", 0.0, "PG"),
            ("{{/* comment */}}x", 0.0, "x"),
        ];
        for (t, v, want) in cases {
            assert_eq!(render(t, v).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn rules_templates_reject_unsupported_constructs_clearly() {
        for (t, needle) in [
            ("{{ range $labels }}x{{ end }}", "\"range\" is not supported"),
            ("{{ nosuch $value }}", "function \"nosuch\" not defined"),
            ("{{ if $value }}x", "unexpected EOF"),
            ("{{ end }}", "unexpected {{end}}"),
            ("{{ $x := 1 }}", "not supported"),
            ("{{ $value ", "unclosed action"),
            ("{{ $nope }}", "undefined variable"),
        ] {
            let e = Template::parse("__alert_X", t).unwrap_err();
            assert!(e.contains(needle), "{t}: {e}");
            assert!(e.starts_with("template: __alert_X:1:"), "{e}");
        }
    }
}
