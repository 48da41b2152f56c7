//! Push sources: sonde owns the UDP socket a plugin is granted (`grants.listen_udp`)
//! and hands it what arrives. A plugin that panics or loops in `ingest` must cost only
//! that batch: the instance is re-created, the socket keeps receiving, the other
//! targets keep their schedule; an address that cannot be bound is reported on the
//! target.

use sonde_tests::{Sonde, test_plugin, toml_str, wait_for, wait_until};
use std::net::UdpSocket;
use std::time::Duration;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn plugins_toml(udp_port: u16) -> String {
    let misbehave = toml_str(test_plugin("misbehave").display().to_string());
    format!(
        "[node]\nplugin = \"node\"\ninterval = \"1s\"\n\
         [node.grants]\nread = [\"/proc\", \"/sys\"]\n\
         [node.config]\ncollectors = [\"loadavg\"]\n\n\
         [push]\nplugin = {misbehave}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         [push.grants]\nlisten_udp = [\"127.0.0.1:{udp_port}\"]\n\
         [push.config]\nmode = \"ok\"\n"
    )
}

fn receiver_metric(s: &Sonde, name: &str) -> f64 {
    s.metrics().value(name, &[("plugin", "push")]).unwrap_or(0.0)
}

#[test]
fn a_misbehaving_ingest_costs_only_its_batch() {
    let port = free_udp_port();
    let s = Sonde::start(&plugins_toml(port));
    s.wait_health("push", "up", Duration::from_secs(10));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", port);
    for i in 0..50 {
        client.send_to(format!("m{i}:1|c").as_bytes(), to).unwrap();
    }
    wait_for(Duration::from_secs(10), "50 datagrams counted", || {
        (receiver_metric(&s, "sonde_receiver_datagrams_total") == 50.0).then_some(())
    });
    assert_eq!(receiver_metric(&s, "sonde_receiver_ingest_failures_total"), 0.0);
    assert_eq!(receiver_metric(&s, "sonde_receiver_udp_drops_total"), 0.0);

    // A panic in ingest: counted, the instance re-created.
    client.send_to(b"panic", to).unwrap();
    wait_for(Duration::from_secs(10), "the panicking ingest counted", || {
        (receiver_metric(&s, "sonde_receiver_ingest_failures_total") == 1.0).then_some(())
    });
    let restarts = s.metrics().value("sonde_plugin_restarts_total", &[("plugin", "push")]);
    assert!(restarts >= Some(1.0), "restarts {restarts:?}");

    // A loop in ingest ends at the timeout; datagrams sent meanwhile wait in the
    // socket buffer and are taken afterwards, and the node target keeps its schedule.
    let before = s
        .metrics()
        .value("sonde_plugin_collections_total", &[("plugin", "node")])
        .unwrap();
    client.send_to(b"loop", to).unwrap();
    for i in 0..20 {
        client.send_to(format!("after{i}:1|c").as_bytes(), to).unwrap();
    }
    wait_for(Duration::from_secs(10), "the looping ingest counted", || {
        (receiver_metric(&s, "sonde_receiver_ingest_failures_total") == 2.0).then_some(())
    });
    wait_for(Duration::from_secs(10), "the datagrams after the loop counted", || {
        (receiver_metric(&s, "sonde_receiver_datagrams_total") == 72.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = s
        .metrics()
        .value("sonde_plugin_collections_total", &[("plugin", "node")])
        .unwrap();
    assert!(after - before >= 3.0, "node collections went from {before} to {after}");
    // The push target itself is up again: collect works on the fresh instance.
    s.wait_health("push", "up", Duration::from_secs(10));
    // The fresh instance registers its series again; the host must not mistake that
    // for a plugin defining ids twice.
    let invalid = s.metrics().value(
        "sonde_plugin_collection_failures_total",
        &[("plugin", "push"), ("reason", "invalid_output")],
    );
    assert_eq!(invalid, None, "collections after the re-created instance were refused");
    let log = s.stderr();
    assert!(
        log.contains("ingest failed") && log.contains("deliberate panic in ingest"),
        "{log}"
    );
}

#[test]
fn an_address_that_cannot_be_bound_is_reported_on_the_target() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = Sonde::start(&plugins_toml(port));
    let t = s.wait_health("push", "down", Duration::from_secs(10));
    let err = t["lastError"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains(&format!("cannot listen on udp 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
    // Freed, the address is bound at a later interval without a restart.
    drop(taken);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .target("push")
            .is_some_and(|t| t["health"] == "up")),
        "the target did not come up once the port was free: {:?}",
        s.target("push")
    );
}
