//! The statsd plugin end to end: lines sent over UDP and TCP to the socket sonde owns
//! come out of sonde's PromQL API with statsd_exporter's names and values (mapping,
//! timers in seconds, malformed lines counted), and the aggregation state survives a
//! hot reload of the plugin file (snapshot/restore), while a broken new file keeps the
//! old version running.

use serde_json::Value;
use sonde_tests::{Sonde, SondeOptions, free_port, plugin, toml_str, wait_for};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

const MAPPING: &str = r#"
mappings:
  - match: "airflow.dag.*.*.duration"
    name: "airflow_task_duration_seconds"
    observer_type: histogram
    histogram_options:
      buckets: [0.5, 1, 5]
    labels:
      dag_id: "$1"
      task_id: "$2"
  - match: "drop.*"
    action: drop
    name: "dropped"
"#;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn plugins_toml(wasm: &Path, udp: u16, tcp: u16) -> String {
    format!(
        "[statsd]\nplugin = {}\ninterval = \"1s\"\n\
         [statsd.grants]\nlisten_udp = [\"127.0.0.1:{udp}\"]\nlisten_tcp = [\"127.0.0.1:{tcp}\"]\n\
         [statsd.config]\nmapping = '''{MAPPING}'''\n",
        toml_str(wasm.display().to_string())
    )
}

/// The value of the one series `query` returns at this instant, if there is one.
fn instant(s: &Sonde, query: &str) -> Option<f64> {
    let body: Value = serde_json::from_str(&s.get_with_query("/api/v1/query", &[("query", query)]).body).unwrap();
    assert_eq!(body["status"], "success", "{query}: {body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert!(result.len() <= 1, "{query} matched {} series: {body}", result.len());
    result.first().map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
}

#[track_caller]
fn wait_value(s: &Sonde, query: &str, want: f64) {
    let mut last = None;
    let ok = sonde_tests::wait_until(Duration::from_secs(15), || {
        last = instant(s, query);
        last == Some(want)
    });
    assert!(ok, "{query}: wanted {want}, last saw {last:?}");
}

fn send(sock: &UdpSocket, port: u16, lines: &[&[u8]]) {
    for l in lines {
        sock.send_to(l, ("127.0.0.1", port)).unwrap();
    }
}

/// The plugin in a directory of the test's own, so it can be replaced.
fn private_copy(dir: &Path) -> std::path::PathBuf {
    let to = dir.join("statsd.wasm");
    std::fs::copy(plugin("statsd"), &to).unwrap();
    to
}

/// The same component with a custom section appended: a new file (new hash) that
/// behaves the same, as a rebuilt plugin would.
fn new_version(wasm: &Path, tag: u8) {
    let mut bytes = std::fs::read(wasm).unwrap();
    let name = b"sonde-test-version";
    let payload_len = 1 + name.len() + 1;
    bytes.push(0); // custom section id
    bytes.push(payload_len as u8); // LEB128 size (< 128)
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.push(tag);
    // Written aside and renamed, as a deploy would, so sonde never sees half a file.
    let tmp = wasm.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, wasm).unwrap();
}

#[test]
fn statsd_lines_become_statsd_exporter_series() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = private_copy(dir.path());
    let (udp, tcp) = (free_udp_port(), free_port());
    let s = Sonde::start(&plugins_toml(&wasm, udp, tcp));
    s.wait_health("statsd", "up", Duration::from_secs(15));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(
        &c,
        udp,
        &[
            b"requests:1|c\nrequests:2|c",
            b"requests:1|c|@0.5",
            b"temperature:20|g",
            b"temperature:+3|g",
            b"temperature:-1|g",
            b"airflow.dag.etl.load.duration:250|ms",
            b"airflow.dag.etl.load.duration:2000|ms",
            b"airflow.dag.etl.load.duration:9000|ms",
            b"drop.me:1|c",
            b"tagged:5|c|#env:prod,region:eu",
            b"influx,env=dev:7|c",
            b"bad line without colon",
            b"bad:value|c",
            &[0xff, 0xfe, b':', b'1', b'|', b'c'],
        ],
    );
    // 1 + 2 + 1/0.5
    wait_value(&s, "requests", 5.0);
    wait_value(&s, "temperature", 22.0);
    wait_value(&s, r#"tagged{env="prod",region="eu"}"#, 5.0);
    wait_value(&s, r#"influx{env="dev"}"#, 7.0);
    // Timers in seconds, in the mapping's buckets, with its labels.
    let h = r#"airflow_task_duration_seconds_bucket{dag_id="etl",task_id="load",le="#;
    wait_value(&s, &format!("{h}\"0.5\"}}"), 1.0);
    wait_value(&s, &format!("{h}\"5\"}}"), 2.0);
    wait_value(&s, &format!("{h}\"+Inf\"}}"), 3.0);
    wait_value(&s, r#"airflow_task_duration_seconds_sum{dag_id="etl"}"#, 11.25);
    assert_eq!(instant(&s, "dropped"), None);
    assert_eq!(instant(&s, r#"{__name__=~"drop.*"}"#), None);
    // Three malformed lines, counted by reason and dropped.
    wait_value(&s, "sum(statsd_exporter_sample_errors_total)", 3.0);
    // TCP: lines, including one split across writes.
    let mut t = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    t.write_all(b"requests:10|c\nreq").unwrap();
    t.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    t.write_all(b"uests:100|c\n").unwrap();
    drop(t);
    wait_value(&s, "requests", 115.0);
}

#[test]
fn aggregation_state_survives_a_hot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = private_copy(dir.path());
    let udp = free_udp_port();
    let s = Sonde::start_with(SondeOptions {
        plugins_toml: Some(plugins_toml(&wasm, udp, free_port())),
        ..Default::default()
    });
    s.wait_health("statsd", "up", Duration::from_secs(15));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(&c, udp, &[b"jobs:5|c", b"queue:7|g"]);
    wait_value(&s, "jobs", 5.0);

    new_version(&wasm, 1);
    let reloads = || s.metrics().value("sonde_plugin_reloads_total", &[("plugin", "statsd")]);
    wait_for(Duration::from_secs(20), "the new version swapped in", || {
        (reloads() == Some(1.0)).then_some(())
    });
    // The counter goes on from 5: the new instance restored the old one's state.
    send(&c, udp, &[b"jobs:3|c"]);
    wait_value(&s, "jobs", 8.0);
    wait_value(&s, "queue", 7.0);
    assert!(
        s.stderr().contains("now running the new plugin version"),
        "{}",
        s.stderr()
    );

    // A broken file is refused; the running version keeps counting.
    std::fs::write(dir.path().join("broken.tmp"), b"\0asm not a component").unwrap();
    std::fs::rename(dir.path().join("broken.tmp"), &wasm).unwrap();
    wait_for(Duration::from_secs(20), "the broken version refused", || {
        s.stderr().contains("the previous version keeps running").then_some(())
    });
    send(&c, udp, &[b"jobs:1|c"]);
    wait_value(&s, "jobs", 9.0);
    assert_eq!(reloads(), Some(1.0));
    s.wait_health("statsd", "up", Duration::from_secs(5));
}
