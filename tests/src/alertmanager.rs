//! A real Alertmanager 0.25 (Debian's `prometheus-alertmanager`) on a random
//! 127.0.0.1 port with clustering off, a temp storage dir and a config that routes
//! everything to a receiver that sends nothing: the tests read what it received
//! through its API v2.

use crate::external::External;
use crate::http;
use serde_json::Value;
use tempfile::TempDir;

const CONFIG: &str =
    "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n";

pub struct Alertmanager {
    pub server: External,
    _dir: TempDir,
}

impl Alertmanager {
    #[track_caller]
    pub fn start() -> Alertmanager {
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-am-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write alertmanager.yml");
        let storage = dir.path().join("data");
        let server = External::start(
            "prometheus-alertmanager",
            |port| {
                vec![
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--cluster.listen-address=".into(),
                    format!("--storage.path={}", storage.display()),
                    format!("--config.file={}", config.display()),
                ]
            },
            "/-/ready",
        );
        Alertmanager { server, _dir: dir }
    }

    /// Base URL for sonde's `[[alerting.alertmanagers]] url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `GET /api/v2/alerts`: the alerts it holds (active, silenced, inhibited).
    #[track_caller]
    pub fn alerts(&self) -> Vec<Value> {
        let r = http::get(&self.server.url("/api/v2/alerts")).expect("GET /api/v2/alerts");
        assert_eq!(r.status, 200, "{}", r.body);
        match serde_json::from_str(&r.body).expect("alerts JSON") {
            Value::Array(a) => a,
            other => panic!("/api/v2/alerts is not a list: {other}"),
        }
    }
}
