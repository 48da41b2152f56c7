//! Bad configuration files: `sonde check` and `sonde run` must name every problem as
//! `<file>:<line>:<col>: <message>`, exit non-zero and never panic.

use sonde_tests::{CommandOutput, free_port, plugin_dir, run_sonde};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const GOOD_SONDE: &str = "log_level = \"info\"\n[defaults]\ninterval = \"15s\"\n";
const GOOD_PLUGINS: &str = "[node]\nplugin = \"node\"\n[node.grants]\nread = [\"/proc\", \"/sys\"]\nstatfs = true\n";

/// A temp dir holding `sonde.toml` and `plugins.toml`.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new(sonde_toml: &str, plugins_toml: &str) -> Files {
        let dir = tempfile::Builder::new().prefix("sonde-e2e-config-").tempdir().unwrap();
        std::fs::write(dir.path().join("sonde.toml"), sonde_toml).unwrap();
        std::fs::write(dir.path().join("plugins.toml"), plugins_toml).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.path("sonde.toml").display().to_string(),
            "--plugins".into(),
            self.path("plugins.toml").display().to_string(),
            "--plugin-dir".into(),
            plugin_dir().display().to_string(),
        ]
    }

    /// `sonde check` on both files; asserts it fails with exit code 1 and no panic.
    #[track_caller]
    fn check_fails(&self) -> CommandOutput {
        let out = self.check();
        assert_eq!(
            out.status.code(),
            Some(1),
            "sonde check should exit 1 on bad files:\n{}",
            out.all()
        );
        out
    }

    #[track_caller]
    fn check(&self) -> CommandOutput {
        let mut args = vec!["check".to_string()];
        args.extend(self.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_sonde(self.dir.path(), &args);
        assert_no_panic(&out);
        out
    }
}

#[track_caller]
fn assert_no_panic(out: &CommandOutput) {
    assert!(!out.all().contains("panicked"), "sonde panicked:\n{}", out.all());
}

/// Each problem is reported once (a problem printed twice also miscounts the total).
#[track_caller]
fn assert_no_duplicates(out: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for line in out.lines().filter(|l| parse_problem(l).is_some()) {
        assert!(seen.insert(line), "problem reported twice: {line}\nin:\n{out}");
    }
}

/// A reported problem: `<path ending in file>:<line>:<col>: <message>`.
#[derive(Debug)]
struct Problem {
    file: String,
    line: u32,
    message: String,
}

fn problems(out: &str) -> Vec<Problem> {
    out.lines().filter_map(parse_problem).collect()
}

fn parse_problem(line: &str) -> Option<Problem> {
    for file in ["sonde.toml", "plugins.toml"] {
        let Some(at) = line.find(&format!("{file}:")) else {
            continue;
        };
        let mut rest = line[at + file.len() + 1..].splitn(3, ':');
        let line_no = rest.next()?.parse().ok()?;
        let _col: u32 = rest.next()?.parse().ok()?;
        let message = rest.next()?.trim().to_string();
        return Some(Problem {
            file: file.into(),
            line: line_no,
            message,
        });
    }
    None
}

/// Asserts that `out` reports a problem in `file` at `line` whose message contains
/// every word of `words` (ASCII case-insensitive).
#[track_caller]
fn assert_problem(out: &str, file: &str, line: u32, words: &[&str]) {
    let found = problems(out).into_iter().any(|p| {
        let msg = p.message.to_lowercase();
        p.file == file && p.line == line && !msg.is_empty() && words.iter().all(|w| msg.contains(&w.to_lowercase()))
    });
    assert!(
        found,
        "expected `{file}:{line}:<col>: ...{words:?}...` in the output:\n{out}"
    );
}

#[test]
fn valid_files_pass_check() {
    let f = Files::new(GOOD_SONDE, GOOD_PLUGINS);
    let out = f.check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "sonde check rejected valid files:\n{}",
        out.all()
    );
    assert!(out.all().contains("OK"), "sonde check should say OK:\n{}", out.all());
}

#[test]
fn unknown_key_in_sonde_toml() {
    let f = Files::new("listen = \"127.0.0.1:9999\"\nlisen = \"127.0.0.1:1\"\n", GOOD_PLUGINS);
    assert_problem(&f.check_fails().all(), "sonde.toml", 2, &["lisen"]);
}

#[test]
fn unknown_key_in_a_plugin_instance() {
    let f = Files::new(GOOD_SONDE, "[node]\nplugin = \"node\"\nintervall = \"1s\"\n");
    assert_problem(&f.check_fails().all(), "plugins.toml", 3, &["intervall"]);
}

#[test]
fn wrong_type() {
    let f = Files::new(GOOD_SONDE, "[node]\nplugin = \"node\"\ninterval = 5\n");
    assert_problem(&f.check_fails().all(), "plugins.toml", 3, &[]);
}

#[test]
fn missing_plugin_file() {
    let f = Files::new(GOOD_SONDE, "[node]\nplugin = \"no-such-plugin\"\n");
    assert_problem(&f.check_fails().all(), "plugins.toml", 2, &["no-such-plugin"]);
}

#[test]
fn misspelled_grant() {
    let f = Files::new(
        GOOD_SONDE,
        "[node]\nplugin = \"node\"\n[node.grants]\nreed = [\"/proc\"]\n",
    );
    assert_problem(&f.check_fails().all(), "plugins.toml", 4, &["reed"]);
}

#[test]
fn malformed_toml() {
    let f = Files::new(GOOD_SONDE, "[node\nplugin = \"node\"\n");
    assert_problem(&f.check_fails().all(), "plugins.toml", 1, &[]);
}

#[test]
fn a_syntax_error_is_the_only_problem_reported() {
    let f = Files::new(GOOD_SONDE, "[node\nplugin = \"node\"\n");
    let out = f.check_fails().all();
    // Nothing can be said about the content of a file that does not parse: any
    // further "problem" is an artefact of error recovery and misleads the reader.
    let reported: Vec<Problem> = problems(&out)
        .into_iter()
        .filter(|p| p.file == "plugins.toml")
        .collect();
    assert_eq!(
        reported.len(),
        1,
        "a syntax error should be the only problem reported:\n{out}"
    );
}

#[test]
fn bad_durations_and_sizes() {
    let f = Files::new(
        "[defaults]\ninterval = \"soon\"\nmemory_limit = \"lots\"\n",
        "[node]\nplugin = \"node\"\ninterval = \"5 parsecs\"\n",
    );
    let out = f.check_fails().all();
    assert_problem(&out, "sonde.toml", 2, &["soon"]);
    assert_problem(&out, "sonde.toml", 3, &["lots"]);
    assert_problem(&out, "plugins.toml", 3, &["5 parsecs"]);
}

/// Like `promtool check`: one run lists every problem, not only the first.
#[test]
fn several_problems_in_one_file_are_all_reported() {
    let plugins = "\
[a]
plugin = \"node\"
colour = \"blue\"

[b]
plugin = \"node\"
interval = \"fortnightly\"

[c]
plugin = \"node\"
[c.grants]
reed = [\"/proc\"]

[d]
plugin = \"missing-plugin\"
";
    let f = Files::new("lisen = \"x\"\n", plugins);
    let out = f.check_fails().all();
    assert_problem(&out, "plugins.toml", 3, &["colour"]);
    assert_problem(&out, "plugins.toml", 7, &["fortnightly"]);
    assert_problem(&out, "plugins.toml", 12, &["reed"]);
    assert_problem(&out, "plugins.toml", 15, &["missing-plugin"]);
    assert_problem(&out, "sonde.toml", 1, &["lisen"]);
}

#[test]
fn missing_config_file_is_named() {
    let f = Files::new(GOOD_SONDE, GOOD_PLUGINS);
    let missing = f.path("nowhere.toml").display().to_string();
    let args = [
        "check",
        "--plugins",
        &missing,
        "--plugin-dir",
        &plugin_dir().display().to_string(),
    ];
    let out = run_sonde(f.dir.path(), &args);
    assert_no_panic(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a missing --plugins file must fail:\n{}",
        out.all()
    );
    assert!(
        out.all().contains("nowhere.toml"),
        "the error should name the missing file:\n{}",
        out.all()
    );
}

/// A problem printed twice looks like two problems (and miscounts the total).
#[test]
fn each_problem_is_reported_once() {
    let f = Files::new(
        "[defaults]\ninterval = \"soon\"\n",
        "[node]\nplugin = \"node\"\ninterval = \"5 parsecs\"\n[node.grants]\nreed = [\"/proc\"]\n",
    );
    let out = f.check_fails().all();
    assert_eq!(problems(&out).len(), 3, "expected 3 problems:\n{out}");
    assert_no_duplicates(&out);
}

/// `sonde run` validates the same way and exits instead of serving.
#[test]
fn run_refuses_bad_files() {
    let f = Files::new(
        GOOD_SONDE,
        "[node]\nplugin = \"node\"\n[node.grants]\nreed = [\"/proc\"]\n",
    );
    let mut args = vec!["run".to_string()];
    args.extend(f.args());
    let data = f.path("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    args.extend(["--data-dir".into(), data, "--listen".into(), listen]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = run_sonde(f.dir.path(), &args);
    assert_no_panic(&out);
    assert!(
        !out.status.success(),
        "sonde run started with a bad plugins.toml:\n{}",
        out.all()
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "sonde run took {:?} to give up",
        start.elapsed()
    );
    assert_problem(&out.all(), "plugins.toml", 4, &["reed"]);
}

/// `targets` and `file_sd`: bad addresses and patterns are located in plugins.toml,
/// and a file_sd file that does not parse fails the check with its own position.
#[test]
fn file_sd_problems_are_located_in_their_files() {
    let f = Files::new(
        GOOD_SONDE,
        "[web]\nplugin = \"prometheus\"\ntargets = [\"http://a:1\"]\nfile_sd = [\"sd/*.yml\", \"sd/*/x.json\"]\n",
    );
    let out = f.check_fails().all();
    assert_problem(&out, "plugins.toml", 3, &["http://a:1", "host:port"]);
    assert_problem(&out, "plugins.toml", 4, &["glob", "file name"]);

    let f = Files::new(
        GOOD_SONDE,
        "[web]\nplugin = \"prometheus\"\ntargets = [\"127.0.0.1:8000\"]\nfile_sd = [\"sd/*.yml\"]\n",
    );
    std::fs::create_dir(f.path("sd")).unwrap();
    std::fs::write(f.path("sd/web.yml"), "- labels: {env: prod}\n  targets:\n    a: 1\n").unwrap();
    std::fs::write(f.path("sd/ok.yml"), "- targets: ['127.0.0.1:8001']\n").unwrap();
    let out = f.check_fails().all();
    assert!(
        out.contains("sd/web.yml:3:5: targets must be a list of \"host:port\" strings"),
        "the file_sd problem with its position:\n{out}"
    );
    assert!(out.contains("1 problem found"), "{out}");
    std::fs::write(f.path("sd/web.yml"), "- targets: ['127.0.0.1:8002']\n").unwrap();
    let out = f.check();
    assert_eq!(out.status.code(), Some(0), "{}", out.all());
}
