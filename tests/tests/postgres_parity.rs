//! The postgres plugin against Debian's `prometheus-postgres-exporter` (0.11) and a
//! real PostgreSQL 15 in a temp dir: same family names, types and label names; equal
//! values for the static ones; custom read-only queries; faults (server down, wrong
//! password, unknown database, hung server) give `pg_up 0` and a degraded collection
//! (`up 0`, the reason as `lastError`) within the timeout, a hanging statement too
//! (the other metrics kept); another instance keeps its schedule; recovery gives `up 1`;
//! the password stays with the host; config errors are located.

use sonde_tests::postgres::Postgres;
use sonde_tests::{Exposition, Sonde, SondeOptions, exposition, http, run_sonde, toml_str, wait_for, wait_until};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const USER: &str = "sonde_monitor";
const PASSWORD: &str = "pw-7c2e1d-never-in-guest";

/// Share of postgres_exporter's families the plugin must emit.
const MIN_COVERAGE: f64 = 1.0;

fn sonde_toml(connections: &[(&str, u16, &str, &Path)]) -> String {
    let with_db: Vec<_> = connections
        .iter()
        .map(|(n, p, u, f)| (*n, *p, "postgres", *u, *f))
        .collect();
    sonde_toml_db(&with_db)
}

/// `[connections.*]` of sonde.toml: (name, port, database, user, password file).
fn sonde_toml_db(connections: &[(&str, u16, &str, &str, &Path)]) -> String {
    let mut s = String::new();
    for (name, port, database, user, pwfile) in connections {
        s += &format!(
            "[connections.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"{database}\"\nuser = \"{user}\"\n\
             sslmode = \"disable\"\npassword_file = {}\n",
            toml_str(pwfile.display().to_string())
        );
    }
    s
}

fn start(sonde_toml: String, plugins_toml: String) -> Sonde {
    Sonde::start_with(SondeOptions {
        sonde_toml: Some(sonde_toml),
        plugins_toml: Some(plugins_toml),
        ..Default::default()
    })
}

/// Families of the exporter that describe the exporter itself.
fn is_exporter_own(f: &str) -> bool {
    f.starts_with("pg_exporter_") || f.starts_with("pg_scrape_collector_") || !f.starts_with("pg_")
}

fn load(pg: &Postgres) {
    pg.exec("CREATE TABLE orders (id serial PRIMARY KEY, status text, amount float8)");
    pg.exec(
        "INSERT INTO orders (status, amount) SELECT CASE WHEN i % 3 = 0 THEN 'paid' ELSE 'open' END, i \
         FROM generate_series(1, 300) i",
    );
    for _ in 0..5 {
        pg.exec("SELECT count(*) FROM orders WHERE amount > 10");
        pg.exec("UPDATE orders SET amount = amount + 1 WHERE id % 7 = 0");
    }
}

#[test]
fn postgres_plugin_matches_postgres_exporter() {
    let pg = Postgres::start();
    let pwfile = pg.monitor_role(USER, PASSWORD);
    load(&pg);
    pg.exec(&format!("GRANT SELECT, INSERT ON orders TO {USER}"));
    let exporter = pg.exporter(USER, PASSWORD);
    let plugins = "[pg]\nplugin = \"postgres\"\ninterval = \"2s\"\ntimeout = \"2s\"\n\
         [pg.grants]\nsql = [\"main\"]\n\
         [pg.config]\nconnection = \"main\"\n\
         [[pg.config.queries]]\nmetric = \"app_orders\"\n\
         query = \"SELECT status, count(*) AS count, sum(amount) AS amount FROM orders GROUP BY status\"\n\
         labels = [\"status\"]\nvalues = [\"count\", \"amount\"]\n\
         [[pg.config.queries]]\nmetric = \"app_largest\"\nkind = \"gauge\"\n\
         query = \"SELECT max(amount) AS amount FROM orders\"\nvalues = [\"amount\"]\n\
         [[pg.config.queries]]\nmetric = \"app_sneaky\"\n\
         query = \"INSERT INTO orders (status, amount) VALUES ('sneaky', 1) RETURNING id AS id\"\nvalues = [\"id\"]\n\
         [[pg.config.queries]]\nmetric = \"app_hijack\"\n\
         query = \"SELECT length(set_config('application_name', 'hijacked', false)) AS len\"\nvalues = [\"len\"]\n\
         [[pg.config.queries]]\nmetric = \"app_secrets\"\n\
         query = \"SELECT rolname, length(rolpassword) AS len FROM pg_authid\"\nlabels = [\"rolname\"]\nvalues = [\"len\"]\n";
    let sonde = start(sonde_toml(&[("main", pg.port, USER, &pwfile)]), plugins.to_string());
    sonde.wait_health("pg", "up", Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "pg_up 1", || {
        (sonde.federate(&["pg_up"]).value("pg_up", &[]) == Some(1.0)).then_some(())
    });

    let ex_page = http::get(&exporter.url("/metrics")).expect("exporter /metrics");
    let ex = exposition::parse(&ex_page.body).expect("exporter page parses");
    assert_eq!(
        ex.value("pg_up", &[]),
        Some(1.0),
        "the exporter cannot reach the server"
    );
    let ours = wait_for(Duration::from_secs(20), "the custom metrics", || {
        let e = sonde.federate(&["{job=\"pg\"}"]);
        e.value("app_orders_count", &[("status", "paid")])
            .is_some()
            .then_some(e)
    });

    // Names, types, label names.
    let ex_families: BTreeSet<&String> = ex.types.keys().filter(|f| !is_exporter_own(f)).collect();
    let our_families: BTreeSet<&String> = ours.types.keys().filter(|f| f.starts_with("pg_")).collect();
    let both: Vec<&String> = ex_families.intersection(&our_families).copied().collect();
    let (ex_labels, our_labels) = (
        ex.label_names_by_family(&[]),
        ours.label_names_by_family(&["job", "instance"]),
    );
    let mut problems = Vec::new();
    for f in &both {
        if ex.types[*f] != ours.types[*f] {
            problems.push(format!(
                "{f}: type {}, postgres_exporter says {}",
                ours.types[*f], ex.types[*f]
            ));
        }
        if ex_labels.get(*f) != our_labels.get(*f) {
            problems.push(format!(
                "{f}: labels {:?}, postgres_exporter has {:?}",
                our_labels.get(*f),
                ex_labels.get(*f)
            ));
        }
    }
    problems.extend(static_values(&ex, &ours));
    let missing: Vec<&&String> = ex_families.difference(&our_families).collect();
    let extra: Vec<&&String> = our_families.difference(&ex_families).collect();
    let coverage = both.len() as f64 / ex_families.len().max(1) as f64;
    println!(
        "postgres plugin coverage: {}/{} postgres_exporter families ({:.1}%)",
        both.len(),
        ex_families.len(),
        coverage * 100.0
    );
    println!("missing: {missing:?}\nonly in the plugin: {extra:?}");
    assert!(
        problems.is_empty(),
        "the plugin differs from postgres_exporter:\n{}",
        problems.join("\n")
    );
    assert!(
        coverage >= MIN_COVERAGE,
        "coverage {:.1}%; missing {missing:?}",
        coverage * 100.0
    );
    for name in [
        "pg_postmaster_start_time_seconds",
        "pg_replication_lag_seconds",
        "pg_stat_bgwriter_checkpoints_timed",
    ] {
        assert!(ours.types.contains_key(name), "{name} missing");
    }

    // Custom queries: two work, the INSERT is refused by the read-only transaction
    // (and nothing was written), pg_authid (where passwords live) is refused to the
    // pg_monitor role.
    assert_eq!(ours.value("app_orders_count", &[("status", "paid")]), Some(100.0));
    assert_eq!(ours.value("app_orders_count", &[("status", "open")]), Some(200.0));
    assert!(ours.value("app_largest_amount", &[]).is_some_and(|v| v >= 300.0));
    assert_eq!(ours.types.get("app_orders_amount").map(String::as_str), Some("gauge"));
    assert!(ours.find("app_sneaky_id", &[]).next().is_none());
    assert!(ours.find("app_secrets_len", &[]).next().is_none());
    let stderr = wait_for(Duration::from_secs(10), "the refusals in the log", || {
        let s = sonde.stderr();
        (s.contains("read-only transaction") && s.contains("pg_authid")).then_some(s)
    });
    assert!(
        stderr.contains("cannot execute INSERT in a read-only transaction"),
        "{stderr}"
    );
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert_eq!(pg.exec("SELECT count(*) FROM orders WHERE status = 'sneaky'"), "0");
    assert_eq!(ours.value("pg_exporter_last_scrape_error", &[]), Some(1.0));
    // Session state a statement sets does not outlive it on the shared connection.
    assert_eq!(ours.value("app_hijack_len", &[]), Some(8.0));
    wait_for(Duration::from_secs(10), "the session reset", || {
        let q = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sonde'";
        let n = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hijacked'";
        (pg.exec(q) == "1" && pg.exec(n) == "0").then_some(())
    });

    // The password stays on the host: not in anything sonde shows (log, targets,
    // series), and the guest's only channel to the server cannot read it back.
    let everything = format!(
        "{}{}{}",
        sonde.stderr(),
        sonde.targets(),
        http::get_with_query(&sonde.url("/federate"), &[("match[]", "{job=\"pg\"}")])
            .expect("federate")
            .body
    );
    assert!(!everything.contains(PASSWORD), "the password leaked");
}

/// Values that do not change between the two scrapes.
fn static_values(ex: &Exposition, ours: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    for name in [
        "pg_settings_max_connections",
        "pg_settings_shared_buffers_bytes",
        "pg_settings_checkpoint_timeout_seconds",
        "pg_settings_work_mem_bytes",
        "pg_settings_log_min_duration_statement_seconds",
        "pg_settings_fsync",
        "pg_stat_bgwriter_stats_reset_total",
    ] {
        let (a, b) = (ex.value(name, &[]), ours.value(name, &[]));
        if a.is_none() || a != b {
            problems.push(format!("{name}: plugin {b:?}, postgres_exporter {a:?}"));
        }
    }
    let static_labels = |e: &Exposition| e.find("pg_static", &[]).next().map(|s| s.labels.clone());
    let strip = |l: Option<Vec<(String, String)>>| {
        l.map(|l| {
            l.into_iter()
                .filter(|(n, _)| n != "job" && n != "instance")
                .collect::<Vec<_>>()
        })
    };
    if strip(static_labels(ex)) != strip(static_labels(ours)) {
        problems.push(format!(
            "pg_static: plugin {:?}, postgres_exporter {:?}",
            static_labels(ours),
            static_labels(ex)
        ));
    }
    for db in ["postgres", "template1"] {
        let (a, b) = (
            ex.value("pg_database_size_bytes", &[("datname", db)]),
            ours.value("pg_database_size_bytes", &[("datname", db)]),
        );
        if a.is_none() || b.is_none() || (a.unwrap() - b.unwrap()).abs() > 0.05 * a.unwrap() {
            problems.push(format!(
                "pg_database_size_bytes{{datname={db}}}: plugin {b:?}, postgres_exporter {a:?}"
            ));
        }
    }
    problems
}

/// `up` (the host's) and `pg_up` (the plugin's) of `job`, once both exist.
fn up_and_pg_up(sonde: &Sonde, job: &str) -> (f64, f64) {
    wait_for(Duration::from_secs(20), "up and pg_up", || {
        let e = sonde.federate(&[&format!("{{job=\"{job}\",__name__=~\"up|pg_up\"}}")]);
        Some((e.value("up", &[])?, e.value("pg_up", &[])?))
    })
}

#[test]
fn faults_give_up_0_and_pg_up_0_within_the_timeout() {
    let mut pg = Postgres::start();
    let pwfile = pg.monitor_role(USER, PASSWORD);
    let wrong = pg.dir().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    // Nothing listens on `down`; `hung` accepts and never answers.
    let down = sonde_tests::free_port();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let conns = [
        ("main", pg.port, "postgres", USER, pwfile.as_path()),
        ("wrong", pg.port, "postgres", USER, wrong.as_path()),
        ("down", down, "postgres", USER, pwfile.as_path()),
        ("hung", hung_port, "postgres", USER, pwfile.as_path()),
        ("nodb", pg.port, "no_such_db", USER, pwfile.as_path()),
    ];
    let mut plugins = String::new();
    for (name, ..) in &conns {
        plugins += &format!(
            "[{name}]\nplugin = \"postgres\"\ninterval = \"2s\"\ntimeout = \"2s\"\n[{name}.grants]\nsql = [\"{name}\"]\n\
             [{name}.config]\nconnection = \"{name}\"\n"
        );
    }
    plugins += "[slow]\nplugin = \"postgres\"\ninterval = \"3s\"\ntimeout = \"2s\"\n[slow.grants]\nsql = [\"main\"]\n\
        [slow.config]\nconnection = \"main\"\n\
        [[slow.config.queries]]\nmetric = \"app_sleep\"\nquery = \"SELECT 1 AS one FROM pg_sleep(30)\"\nvalues = [\"one\"]\n\
        [node]\nplugin = \"node\"\ninterval = \"1s\"\n[node.grants]\nread = [\"/proc\", \"/sys\"]\n\
        [node.config]\ncollectors = [\"cpu\", \"meminfo\", \"loadavg\"]\n";
    let sonde = start(sonde_toml_db(&conns), plugins);
    sonde.wait_health("main", "up", Duration::from_secs(30));
    for (job, why) in [
        ("wrong", "password authentication failed"),
        ("down", "refused"),
        ("hung", "no connection within"),
        ("nodb", "database \"no_such_db\" does not exist"),
    ] {
        let t = sonde.wait_health(job, "down", Duration::from_secs(30));
        let last_error = t["lastError"].as_str().unwrap_or_default();
        let prefix = format!("PostgreSQL on connection \"{job}\" is down: ");
        assert!(
            last_error.starts_with(&prefix) && last_error.contains(why),
            "{job}: {t}"
        );
        let took = t["lastScrapeDuration"].as_f64().unwrap_or(99.0);
        assert!(took < 2.5, "{job}: the collection took {took}s with a 2s timeout: {t}");
        assert_eq!(up_and_pg_up(&sonde, job), (0.0, 0.0), "{job}");
    }
    let everything = format!("{}{}", sonde.stderr(), sonde.targets());
    assert!(
        !everything.contains(PASSWORD) && !everything.contains("not-the-password"),
        "{everything}"
    );
    let failures = sonde
        .metrics()
        .value(
            "sonde_plugin_collection_failures_total",
            &[("plugin", "wrong"), ("reason", "target")],
        )
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "degraded collections are counted");

    // A statement that hangs is cancelled by the server at the deadline; the
    // collection still ends within the timeout and keeps the builtin metrics, but the
    // target is down with the statement's error and pg_up is 0.
    let started = Instant::now();
    let t = sonde.wait_health("slow", "down", Duration::from_secs(30));
    let last_error = t["lastError"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with("PostgreSQL on connection \"main\": query app_sleep: ")
            && (last_error.contains("statement timeout") || last_error.contains("no answer within")),
        "{t}"
    );
    let took = t["lastScrapeDuration"].as_f64().unwrap_or(99.0);
    assert!(took < 2.5, "the collection took {took}s with a 2s timeout: {t}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(up_and_pg_up(&sonde, "slow"), (0.0, 0.0));
    let e = sonde.federate(&["pg_stat_database_xact_commit{job=\"slow\"}"]);
    assert!(
        e.find("pg_stat_database_xact_commit", &[]).next().is_some(),
        "builtin metrics kept"
    );
    // The server cancelled it: nothing is left running.
    wait_for(Duration::from_secs(10), "pg_sleep to end on the server", || {
        (pg.exec("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()")
            == "0")
            .then_some(())
    });

    // The server goes away and comes back: `main` is down meanwhile (node keeps its
    // schedule), then up again on the same instance.
    assert_eq!(up_and_pg_up(&sonde, "main"), (1.0, 1.0));
    pg.stop();
    sonde.wait_health("main", "down", Duration::from_secs(20));
    // A collection under way while the server shuts down fails query by query (a
    // degraded collection naming each statement); the next one finds it gone.
    let down = |t: &serde_json::Value| {
        t["lastError"]
            .as_str()
            .is_some_and(|e| e.starts_with("PostgreSQL on connection \"main\" is down: "))
    };
    let got = wait_until(Duration::from_secs(10), || {
        sonde.target("main").is_some_and(|t| down(&t))
    });
    assert!(got, "{:?}", sonde.target("main"));
    assert_eq!(up_and_pg_up(&sonde, "main"), (0.0, 0.0));
    let node_before = sonde.target("node").expect("node")["lastScrape"].clone();
    std::thread::sleep(Duration::from_millis(2500));
    let node = sonde.target("node").expect("node");
    assert_eq!(node["health"], "up", "{node}");
    assert_ne!(node["lastScrape"], node_before, "node kept its schedule: {node}");
    pg.restart();
    let t = sonde.wait_health("main", "up", Duration::from_secs(30));
    assert_eq!(t["lastError"], "", "{t}");
    wait_for(Duration::from_secs(10), "up 1 and pg_up 1 again", || {
        (up_and_pg_up(&sonde, "main") == (1.0, 1.0)).then_some(())
    });
    drop(hung);
}

#[test]
fn connection_config_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let sonde = "[connections.main]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword_file = \"/nonexistent/pg.pw\"\n\
                 [connections.inline]\nuser = \"u\"\npassword = \"hunter2\"\n";
    let plugins =
        "[pg]\nplugin = \"postgres\"\n[pg.grants]\nsql = [\"main\", \"nosuch\"]\n[pg.config]\nconnection = \"main\"\n";
    std::fs::write(dir.path().join("sonde.toml"), sonde).unwrap();
    std::fs::write(dir.path().join("plugins.toml"), plugins).unwrap();
    let (s, p) = (dir.path().join("sonde.toml"), dir.path().join("plugins.toml"));
    let plugin_dir = sonde_tests::plugin_dir();
    let args = [
        "check",
        "--config",
        s.to_str().unwrap(),
        "--plugins",
        p.to_str().unwrap(),
        "--plugin-dir",
        plugin_dir.to_str().unwrap(),
    ];
    let out = run_sonde(dir.path(), &args).all();
    let has = |file: &str, line: usize, what: &str| {
        out.lines()
            .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(what))
    };
    assert!(has("sonde.toml", 4, "/nonexistent/pg.pw"), "{out}");
    assert!(has("sonde.toml", 7, "inline passwords are not accepted"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    // The sonde.toml problems come first; fix them and the grant is checked.
    std::fs::write(&s, "[connections.main]\nuser = \"u\"\n").unwrap();
    let out = run_sonde(dir.path(), &args).all();
    assert!(
        out.lines()
            .any(|l| l.contains("plugins.toml:4:") && l.contains("nosuch") && l.contains("[connections.nosuch]")),
        "{out}"
    );
}
