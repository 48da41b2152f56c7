//! `sonde import openmetrics`: backfilled samples are stored exactly (values, labels,
//! timestamps as promtool computes them), a bad file is rejected with its line, and
//! the imported blocks survive a start of the daemon.

use std::path::Path;
use std::process::Command;

use sonde_tests::sonde_bin;

/// Two families over 3 h 20 min from 1795320000 s, which crosses the 6 h window
/// boundary at 1795327200 s: the import writes two blocks.
fn openmetrics() -> String {
    let mut s = String::from("# HELP req Requests.\n# TYPE req counter\n");
    for i in 0..200 {
        s.push_str(&format!(
            "req_total{{code=\"200\",path=\"/a b\"}} {} {}\n",
            i * 3,
            1_795_320_000 + i * 60
        ));
    }
    s.push_str("# TYPE temp gauge\n");
    for i in 0..200 {
        let v = if i == 7 {
            "NaN".to_string()
        } else {
            format!("{:.2}", 20.0 + i as f64 * 0.01)
        };
        s.push_str(&format!("temp{{room=\"q\\\"x\"}} {v} {}.5\n", 1_795_320_000 + i * 60));
    }
    s.push_str("# EOF\n");
    s
}

fn run(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(sonde_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run sonde")
}

fn dump(data: &Path, selector: &str) -> Vec<(String, String, i64)> {
    let out = run(&["tsdb", "dump", "--match", selector], data);
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut it = l.rsplitn(3, ' ');
            let t = it.next().unwrap().parse().unwrap();
            let v = it.next().unwrap().to_string();
            (it.next().unwrap().to_string(), v, t)
        })
        .collect()
}

#[test]
fn imported_samples_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.om");
    std::fs::write(&file, openmetrics()).unwrap();
    let data = dir.path().join("data");
    let out = run(&["import", "openmetrics", file.to_str().unwrap()], &data);
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 400 samples of 2 series"),
        "{out:?}"
    );

    let req = dump(&data, "req_total");
    assert_eq!(req.len(), 200);
    assert_eq!(req[0].0, r#"req_total{code="200",path="/a b"}"#);
    assert_eq!((req[5].1.as_str(), req[5].2), ("15", 1_795_320_300_000));
    let temp = dump(&data, "temp");
    assert_eq!(temp.len(), 200);
    assert_eq!(temp[0].0, r#"temp{room="q\"x"}"#);
    // Fractional seconds become milliseconds.
    assert_eq!((temp[1].1.as_str(), temp[1].2), ("20.01", 1_795_320_060_500));
    assert_eq!(temp[7].1, "NaN");

    // A daemon started on the directory keeps the imported blocks.
    let blocks_before: Vec<_> = std::fs::read_dir(data.join("blocks")).unwrap().collect();
    assert_eq!(blocks_before.len(), 2, "two 6 h windows, one block each");
    let sonde = sonde_tests::Sonde::start_with(sonde_tests::SondeOptions {
        plugins_toml: Some(String::new()),
        data_dir: Some(data.clone()),
        ..Default::default()
    });
    drop(sonde);
    assert_eq!(dump(&data, "req_total").len(), 200);
}

#[test]
fn a_bad_file_is_rejected_with_its_line_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.om");
    std::fs::write(&file, "# TYPE a gauge\na 1 1795320000\na{b=\"c} 2 1795320001\n# EOF\n").unwrap();
    let data = dir.path().join("data");
    let out = run(&["import", "openmetrics", file.to_str().unwrap()], &data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let blocks = std::fs::read_dir(data.join("blocks")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(blocks, 0);

    std::fs::write(&file, "a 1 1795320000\n").unwrap();
    let out = run(&["import", "openmetrics", file.to_str().unwrap()], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("EOF"), "{out:?}");
}
