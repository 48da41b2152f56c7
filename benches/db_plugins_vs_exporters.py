#!/usr/bin/env python3
"""postgres and redis plugins vs postgres_exporter and redis_exporter, in one run.

Starts a throwaway PostgreSQL 15 (Debian's binaries, initdb in a temp dir, run as the
`postgres` system user, 127.0.0.1 only) and a redis-server (127.0.0.1 only), then, side
by side for the same period:
  - sonde with the postgres plugin every 1 s   vs  prometheus-postgres-exporter,
  - sonde with the redis plugin every 1 s      vs  prometheus-redis-exporter,
each exporter scraped by this script every 1 s (no Prometheus in the loop).

Each plugin runs in its own sonde process so that /proc accounting separates them:
a sonde's figure is the whole daemon (storage, WAL, self-metrics, the host's
PostgreSQL client for the sql import) divided by its plugin's collections; an
exporter's is the whole exporter process divided by the scrapes. CPU is utime+stime
from /proc/<pid>/stat, i.e. the kernel's accounting. The database servers' own CPU
(answering both sides' statements/commands) is not counted on either side.

Usage: benches/db_plugins_vs_exporters.py [--seconds 60] [--rounds 3]
Needs: target/release/sonde, plugins/{postgres,redis}.wasm (scripts/build),
postgresql-15, redis-server, prometheus-postgres-exporter, prometheus-redis-exporter.
Run as root (initdb and postgres run as the `postgres` user).
"""
import argparse, os, pwd, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_exporter import ROOT, SONDE, cpu_seconds, free_port, get, metric, stop, wait_http  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
USER, PASSWORD = "sonde_monitor", "bench-pw-51c2"


def as_postgres():
    pw = pwd.getpwnam("postgres")

    def demote():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return demote


def start_postgres(workdir):
    pw = pwd.getpwnam("postgres")
    d = os.path.join(workdir, "pg")
    os.makedirs(d)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    subprocess.run([f"{PG_BIN}/initdb", "-D", f"{d}/data", "-U", "postgres", "--auth-local=trust",
                    "--auth-host=trust"], check=True, cwd=d, preexec_fn=as_postgres(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(f"{d}/data/pg_hba.conf", "w") as f:
        # The monitoring role logs in with a password, as in production.
        f.write("local all postgres trust\nhost all postgres 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n")
    port = free_port()
    log = open(f"{d}/server.log", "w")
    p = subprocess.Popen([f"{PG_BIN}/postgres", "-D", f"{d}/data", "-p", str(port), "-c",
                          "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={d}"],
                         cwd=d, preexec_fn=as_postgres(), stdout=subprocess.DEVNULL, stderr=log)
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-X", "-q", "-c"]
    for _ in range(300):
        if subprocess.run(psql + ["SELECT 1"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"postgres did not start; see {d}/server.log")
    subprocess.run(psql + [f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; GRANT pg_monitor TO {USER}"],
                   check=True, capture_output=True)
    # A second database, so per-database metrics have more than one row.
    subprocess.run(psql + ["CREATE DATABASE app"], check=True, capture_output=True)
    pwfile = os.path.join(workdir, "pg.password")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    return p, port, pwfile


def start_redis(workdir):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                          "--appendonly", "no", "--dir", workdir],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout.strip() == b"PONG":
            break
        time.sleep(0.1)
    else:
        raise SystemExit("redis-server did not start")
    # Some keys in two databases, so keyspace metrics exist on both sides.
    for db in ("0", "1"):
        for i in range(50):
            subprocess.run(["redis-cli", "-p", str(port), "-n", db, "SET", f"k{i}", "v", "EX", "3600"],
                           capture_output=True)
    return p, port


def start_exporter(argv, env=None):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url)
    return p, url


def start_sonde(workdir, name, sonde_toml, plugins_toml, binary=None, plugin_dir=None):
    """A sonde daemon (`binary`, default SONDE, with the plugins in `plugin_dir`, default
    the checkout's) on a free port, its files under workdir/sonde-<name>."""
    d = os.path.join(workdir, f"sonde-{name}")
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/sonde.toml", "w") as f:
        f.write(sonde_toml)
    with open(f"{d}/plugins.toml", "w") as f:
        f.write(plugins_toml)
    port = free_port()
    p = subprocess.Popen([binary or SONDE, "run", "--config", f"{d}/sonde.toml", "--plugins", f"{d}/plugins.toml",
                          "--plugin-dir", plugin_dir or os.path.join(ROOT, "plugins"), "--data-dir", f"{d}/data",
                          "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=open(f"{d}/stderr.log", "w"), cwd=d)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/ready")
    return p, base


def collections(base, plugin):
    return metric(get(base + "/metrics"), "sonde_plugin_collections_total", f'{{plugin="{plugin}"}}') or 0


def up(base):
    """The `up` sample of the sonde's only target (federate: `up{...} value timestamp`)."""
    for line in get(base + "/federate?match[]=up").splitlines():
        if line.startswith("up{"):
            return float(line.rsplit("} ", 1)[1].split()[0])
    return None


def ratio(a, b):
    return a / b if b else float("inf")


def samples_on_page(url):
    return sum(1 for line in get(url).splitlines() if line and not line.startswith("#"))


def measure(seconds, workdir, pg_port, pwfile, redis_port):
    """One round, all four processes at a 1 s cadence; ms CPU per collection/scrape."""
    dsn = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{pg_port}/postgres?sslmode=disable"
    pge, pge_url = start_exporter(["prometheus-postgres-exporter", "--web.listen-address=127.0.0.1:{port}"],
                                  {"DATA_SOURCE_NAME": dsn})
    rde, rde_url = start_exporter(["prometheus-redis-exporter", "-redis.addr", f"redis://127.0.0.1:{redis_port}",
                                   "-web.listen-address", "127.0.0.1:{port}", "-redis-only-metrics"])
    conn = (f'[connections.main]\nhost = "127.0.0.1"\nport = {pg_port}\ndatabase = "postgres"\n'
            f'user = "{USER}"\nsslmode = "disable"\npassword_file = "{pwfile}"\n')
    pgs, pgs_base = start_sonde(workdir, "pg", conn,
                                '[pg]\nplugin = "postgres"\ninterval = "1s"\n[pg.grants]\nsql = ["main"]\n'
                                '[pg.config]\nconnection = "main"\n')
    addr = f"127.0.0.1:{redis_port}"
    rds, rds_base = start_sonde(workdir, "redis", "",
                                f'[redis]\nplugin = "redis"\ninterval = "1s"\n[redis.grants]\ntcp = ["{addr}"]\n'
                                f'[redis.config]\ntargets = ["{addr}"]\n')
    procs = {"pgs": pgs, "pge": pge, "rds": rds, "rde": rde}
    try:
        time.sleep(3)  # warm-up: compile/cache load, first collections, connections
        get(pge_url), get(rde_url)
        cpu0 = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        n0 = {"pgs": collections(pgs_base, "pg"), "rds": collections(rds_base, "redis")}
        scrapes = 0
        end = time.time() + seconds
        while time.time() < end:
            t = time.time()
            get(pge_url)
            get(rde_url)
            scrapes += 1
            time.sleep(max(0, 1 - (time.time() - t)))
        cpu1 = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        n1 = {"pgs": collections(pgs_base, "pg"), "rds": collections(rds_base, "redis")}
        per = {k: (cpu1[k] - cpu0[k]) * 1e3 / (n1[k] - n0[k]) for k in ("pgs", "rds")}
        per.update({k: (cpu1[k] - cpu0[k]) * 1e3 / scrapes for k in ("pge", "rde")})
        per["pgs_samples"] = metric(get(pgs_base + "/metrics"), "sonde_plugin_samples", '{plugin="pg"}')
        per["rds_samples"] = metric(get(rds_base + "/metrics"), "sonde_plugin_samples", '{plugin="redis"}')
        per["pge_samples"], per["rde_samples"] = samples_on_page(pge_url), samples_on_page(rde_url)
        per["up"] = [up(b) for b in (pgs_base, rds_base)]
        return per
    finally:
        for p in procs.values():
            stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for need in (SONDE, os.path.join(ROOT, "plugins/postgres.wasm"), os.path.join(ROOT, "plugins/redis.wasm"),
                 f"{PG_BIN}/postgres"):
        if not os.path.exists(need):
            raise SystemExit(f"missing {need}: run scripts/build first (or install postgresql-15)")
    for tool in ("prometheus-postgres-exporter", "prometheus-redis-exporter", "redis-server", "redis-cli", "psql"):
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}")
    with tempfile.TemporaryDirectory(prefix="sonde-bench-db-") as workdir:
        os.chmod(workdir, 0o755)
        pg, pg_port, pwfile = start_postgres(workdir)
        redis, redis_port = start_redis(workdir)
        try:
            rounds = [measure(a.seconds, workdir, pg_port, pwfile, redis_port) for _ in range(a.rounds)]
        finally:
            pg.send_signal(signal.SIGINT)  # fast shutdown
            pg.wait(20)
            stop(redis)
    print(f"CPU per collection, median of {a.rounds} rounds x {a.seconds} s at 1 s (all four processes at once):")
    for i, r in enumerate(rounds):
        print(f"  round {i + 1}: postgres plugin {r['pgs']:.2f} ms ({r['pgs_samples']:.0f} samples) vs "
              f"postgres_exporter {r['pge']:.2f} ms ({r['pge_samples']} samples), ratio {ratio(r['pgs'], r['pge']):.2f};  "
              f"redis plugin {r['rds']:.2f} ms ({r['rds_samples']:.0f} samples) vs "
              f"redis_exporter {r['rde']:.2f} ms ({r['rde_samples']} samples), ratio {ratio(r['rds'], r['rde']):.2f};  "
              f"up {r['up']}")
    med = {k: statistics.median(r[k] for r in rounds) for k in ("pgs", "pge", "rds", "rde")}
    print(f"  median: postgres plugin {med['pgs']:.2f} ms, postgres_exporter {med['pge']:.2f} ms, "
          f"ratio {ratio(med['pgs'], med['pge']):.2f}")
    print(f"  median: redis plugin {med['rds']:.2f} ms, redis_exporter {med['rde']:.2f} ms, "
          f"ratio {ratio(med['rds'], med['rde']):.2f}")


if __name__ == "__main__":
    main()
