#!/usr/bin/env python3
"""Scrape: sonde's prometheus plugin vs Prometheus 2.42, scraping the same target at 1 s.

The target is a child process of this script (`scrape_vs_prometheus.py _serve`): a
static-shaped /metrics page in the text format 0.0.4 that looks like a real
application's, 10,000 series in 100 families:
  - 40 counter families (`app_<subsystem>_<kind>_total`) × 100 series
    {handler, method, code},
  - 40 gauge families × 100 series {pool, state},
  - 20 histogram families × 10 label sets {handler, method} × (8 buckets + _sum + _count),
with HELP and TYPE lines. Every second a thread renders a new body (counters grow,
gauges walk, histograms take new observations); every scrape gets the newest one, so
both scrapers store changing values. The server's own CPU is counted on neither side.

Both daemons run at once for the whole measurement and scrape only that target, every
1 s: Prometheus with a config holding that one job (no self-scrape), a temp TSDB dir;
sonde with the prometheus plugin (`[app] plugin = "prometheus"`, a grant for the
target, `url` in its config). After a warm-up, --rounds windows of --seconds each:
  - CPU ms per 1k samples: utime+stime of the whole daemon process (/proc/<pid>/stat)
    over the window ÷ samples scraped in it, where samples = the daemon's own
    `scrape_samples_scraped` (read through its /api/v1/query) × scrapes in the window
    (Prometheus: prometheus_target_interval_length_seconds_count; sonde:
    sonde_plugin_collections_total{plugin="app"}). Samples stored (head appends, both
    sides count their per-scrape report series too) are printed beside it as a check.
  - RSS (VmRSS) at the end of each window.
The headline is all windows together (CPU summed ÷ samples summed): sonde cuts a
block from its head every few minutes, Prometheus every 2 h, so one window may or may
not hold a cut; the blocks cut in each window are printed. The default warm-up (4 min)
passes sonde's first cut, which writes two blocks at once, and the default 4 x 60 s
spans two block ranges.

Usage: benches/scrape_vs_prometheus.py [--seconds 60] [--rounds 4] [--warmup 240]
                                       [--daemons prometheus,sonde]
                                       [--baseline SONDE_BIN:PLUGIN_DIR]  (A/B two builds)
Needs: target/release/sonde and plugins/prometheus.wasm (scripts/build), the Debian
package prometheus (2.42).
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_exporter import (ROOT, SONDE, cpu_seconds, free_port, get, metric_sum, query, rss_kb,  # noqa: E402
                              stop, wait_http)
from db_plugins_vs_exporters import start_sonde  # noqa: E402

PLUGIN = os.path.join(ROOT, "plugins/prometheus.wasm")
SUBSYSTEMS = ["http", "db", "cache", "queue", "auth", "grpc", "worker", "storage", "search", "email"]
HANDLERS = [f"/api/v1/{r}" for r in ("users", "orders", "items", "carts", "payments", "search", "sessions",
                                      "reviews", "stock", "invoices", "shipping", "coupons", "accounts", "reports",
                                      "exports", "imports", "tags", "events", "health", "login")]
BUCKETS = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf"]


class Target:
    """The 10k-series page; `render` advances every value by one second."""

    def __init__(self, seed=1):
        self.rng = random.Random(seed)
        self.counters, self.gauges, self.hists = [], [], []  # (header, [label strings]) and values
        codes = [("GET", "200"), ("GET", "404"), ("POST", "201"), ("POST", "500"), ("PUT", "200")]
        for sub in SUBSYSTEMS:
            for kind in ("requests", "errors", "bytes", "operations"):
                name = f"app_{sub}_{kind}_total"
                labels = [f'{{handler="{h}",method="{m}",code="{c}"}}' for h in HANDLERS for m, c in codes]
                self.counters.append((name, labels, [self.rng.randrange(10**6) for _ in labels]))
            for kind in ("in_flight", "pool_size", "queue_depth", "utilization_ratio"):
                name = f"app_{sub}_{kind}"
                labels = [f'{{pool="p{p:02d}",state="{s}"}}' for p in range(20)
                          for s in ("idle", "active", "waiting", "max", "min")]
                self.gauges.append((name, labels, [self.rng.uniform(0, 100) for _ in labels]))
            for kind, scale in (("request_duration_seconds", 1.0), ("response_size_bytes", 1e4)):
                name = f"app_{sub}_{kind}"
                sets = [f'handler="{h}",method="{m}"' for h in HANDLERS[:5] for m in ("GET", "POST")]
                # per label set: cumulative bucket counts, sum
                self.hists.append((name, sets, scale, [[0] * len(BUCKETS) for _ in sets], [0.0 for _ in sets]))

    def render(self):
        rng, out = self.rng, []
        for name, labels, vals in self.counters:
            out.append(f"# HELP {name} Total {name[4:-6].replace('_', ' ')}.\n# TYPE {name} counter\n")
            for i, lab in enumerate(labels):
                vals[i] += rng.randrange(0, 50)
                out.append(f"{name}{lab} {vals[i]}\n")
        for name, labels, vals in self.gauges:
            out.append(f"# HELP {name} Current {name[4:].replace('_', ' ')}.\n# TYPE {name} gauge\n")
            for i, lab in enumerate(labels):
                vals[i] = max(0.0, vals[i] + rng.uniform(-1, 1))
                out.append(f"{name}{lab} {vals[i]:.3f}\n")
        for name, sets, scale, counts, sums in self.hists:
            out.append(f"# HELP {name} Distribution of {name[4:].replace('_', ' ')}.\n# TYPE {name} histogram\n")
            for i, lab in enumerate(sets):
                n = rng.randrange(1, 40)
                first = rng.randrange(len(BUCKETS))
                for b in range(first, len(BUCKETS)):  # n observations at or under bucket `first`
                    counts[i][b] += n
                sums[i] += n * scale * rng.uniform(0.001, 2)
                for b, le in enumerate(BUCKETS):
                    out.append(f'{name}_bucket{{{lab},le="{le}"}} {counts[i][b]}\n')
                out.append(f"{name}_sum{{{lab}}} {sums[i]:.4f}\n{name}_count{{{lab}}} {counts[i][-1]}\n")
        return "".join(out).encode()


def serve(port):
    """Child process: the target on 127.0.0.1:port; a new body every second."""
    import http.server
    target = Target()
    body = [target.render()]

    def tick():
        while True:
            time.sleep(1 - time.time() % 1)
            body[0] = target.render()
    threading.Thread(target=tick, daemon=True).start()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            b = body[0]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


class Prometheus:
    name = "Prometheus 2.42"

    def __init__(self, workdir, target):
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n")
        port = free_port()
        self.proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={workdir}/prom-data",
                                      f"--web.listen-address=127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{workdir}/prometheus.log", "w"))
        self.base = f"http://127.0.0.1:{port}"
        wait_http(self.base + "/-/ready")

    def counters(self):
        m = get(self.base + "/metrics")
        return {"scrapes": metric_sum(m, "prometheus_target_interval_length_seconds_count", 'interval="1s"'),
                "stored": metric_sum(m, "prometheus_tsdb_head_samples_appended_total"),
                "blocks": metric_sum(m, "prometheus_tsdb_compactions_total")}


class Sonde:
    def __init__(self, workdir, target, name="sonde", binary=None, plugin_dir=None):
        self.name = name
        plugins = (f'[app]\nplugin = "prometheus"\ninterval = "1s"\n[app.grants]\nhttp = ["{target}"]\n'
                   f'[app.config]\nurl = "http://{target}/metrics"\n')
        self.proc, self.base = start_sonde(workdir, name, "", plugins, binary, plugin_dir)

    def counters(self):
        m = get(self.base + "/metrics")
        return {"scrapes": metric_sum(m, "sonde_plugin_collections_total", 'plugin="app"'),
                "stored": metric_sum(m, "sonde_head_samples_appended_total"),
                "blocks": metric_sum(m, "sonde_storage_blocks_written_total")}


def window(daemons, seconds):
    before = {d.name: (cpu_seconds(d.proc.pid), d.counters()) for d in daemons}
    time.sleep(seconds)
    out = {}
    for d in daemons:
        cpu0, c0 = before[d.name]
        cpu1, c1 = cpu_seconds(d.proc.pid), d.counters()
        per_scrape = query(d.base, "sum(scrape_samples_scraped)") or 0
        scrapes = c1["scrapes"] - c0["scrapes"]
        samples = scrapes * per_scrape
        out[d.name] = {"cpu": cpu1 - cpu0, "scrapes": scrapes, "per_scrape": per_scrape, "samples": samples,
                       "stored": c1["stored"] - c0["stored"], "rss": rss_kb(d.proc.pid) / 1024,
                       "blocks": c1["blocks"] - c0["blocks"],
                       "ms_per_1k": (cpu1 - cpu0) * 1e6 / samples if samples else float("inf")}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    # 4 x 60 s = two of sonde's 2 min block ranges, so the windows hold its steady
    # cadence of block cuts; the warm-up passes its first cut (at 1.5 ranges of head).
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=240)
    ap.add_argument("--daemons", default="prometheus,sonde")
    # A/B of two sonde builds in the same windows: a saved binary and its plugin dir
    # (e.g. copies of target/release/sonde and plugins/*.wasm taken before a change).
    ap.add_argument("--baseline", metavar="SONDE_BIN:PLUGIN_DIR",
                    help="also run this sonde build as 'baseline' beside the checkout's")
    if len(sys.argv) == 3 and sys.argv[1] == "_serve":
        return serve(int(sys.argv[2]))
    a = ap.parse_args()
    which = a.daemons.split(",")
    if "sonde" in which:
        for need in (SONDE, PLUGIN):
            if not os.path.exists(need):
                raise SystemExit(f"missing {need}: run scripts/build first (or --daemons prometheus)")
    if "prometheus" in which and not shutil.which("prometheus"):
        raise SystemExit("missing prometheus: apt-get install prometheus")
    with tempfile.TemporaryDirectory(prefix="sonde-bench-scrape-") as workdir:
        port = free_port()
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_serve", str(port)])
        target = f"127.0.0.1:{port}"
        daemons = []
        try:
            wait_http(f"http://{target}/metrics")
            page = get(f"http://{target}/metrics")
            series = sum(1 for line in page.splitlines() if line and not line.startswith("#"))
            print(f"target: {series:,} series, {len(page) / 1024:.0f} KiB per scrape; warm-up {a.warmup} s, "
                  f"then {a.rounds} x {a.seconds} s, both scraping every 1 s", flush=True)
            if "prometheus" in which:
                daemons.append(Prometheus(workdir, target))
            if "sonde" in which:
                daemons.append(Sonde(workdir, target))
            if a.baseline:
                binary, plugin_dir = a.baseline.split(":", 1)
                daemons.append(Sonde(workdir, target, "baseline", binary, plugin_dir))
            time.sleep(a.warmup)
            rounds = []
            for i in range(a.rounds):
                r = window(daemons, a.seconds)
                rounds.append(r)
                print(f"  round {i + 1}: " + ";  ".join(
                    f"{n} {v['ms_per_1k']:.3f} ms/1k samples ({v['scrapes']:.0f} scrapes x {v['per_scrape']:,.0f}, "
                    f"{v['stored']:,.0f} stored, {v['blocks']:.0f} blocks cut, CPU {v['cpu']:.2f} s, RSS {v['rss']:.1f} MB)"
                    for n, v in r.items()), flush=True)
        finally:
            for d in daemons:
                stop(d.proc)
            stop(server)
    names = [d.name for d in daemons]
    # All windows together: sonde cuts a block every few minutes (Prometheus every 2 h,
    # outside any window here), so a single window may or may not hold one.
    total = {n: sum(r[n]["cpu"] for r in rounds) * 1e6 / sum(r[n]["samples"] for r in rounds) for n in names}
    med = {n: statistics.median(r[n]["ms_per_1k"] for r in rounds) for n in names}
    rss = {n: statistics.median(r[n]["rss"] for r in rounds) for n in names}
    print("all windows: " + ", ".join(f"{n} {total[n]:.3f} ms per 1k samples" for n in names))
    print("median window: " + ", ".join(f"{n} {med[n]:.3f} ms per 1k samples, RSS {rss[n]:.1f} MB" for n in names))
    if "baseline" in names:
        print("sonde ÷ baseline: CPU per 1k samples "
              f"{total['sonde'] / total['baseline']:.2f} over all windows (by round: "
              + ", ".join(f"{r['sonde']['ms_per_1k'] / r['baseline']['ms_per_1k']:.2f}" for r in rounds)
              + f"), RSS {rss['sonde'] / rss['baseline']:.2f}")
    if "sonde" in names and "Prometheus 2.42" in names:
        s, p = "sonde", "Prometheus 2.42"
        print(f"sonde ÷ Prometheus: CPU per 1k samples {total[s] / total[p]:.2f} over all windows, "
              f"{med[s] / med[p]:.2f} median window (by round: "
              + ", ".join(f"{r[s]['ms_per_1k'] / r[p]['ms_per_1k']:.2f}" for r in rounds)
              + f"), RSS {rss[s] / rss[p]:.2f}")


if __name__ == "__main__":
    main()
