#!/usr/bin/env python3
"""PromQL range queries: sonde vs Prometheus 2.42 on identical data, side by side in one run.

Data: benches/gen_openmetrics.py's synthetic set at a Grafana-like resolution. By default
2 x 10k series scraped every 15 s for 6 h (28.8 M samples): `bench_gauge` (10k 2-decimal
random walks, 100 per `instance`) and `bench_counter_total` (10k counters with uniform
0..100 increments, 100 per `instance`). 15 s is Prometheus' most common scrape interval and
6 h a usual dashboard range; a range query over it at a 30 s step has ~700 steps, what
Grafana asks for a panel ~700 px wide. The start is aligned to 6 h, so promtool writes
three 2 h blocks (Prometheus' compactor leaves them as they are: it never plans the newest
block) and `sonde import` one 6 h block (its import window, and its compaction level).

The same OpenMetrics file goes to `promtool tsdb create-blocks-from openmetrics` and to
`sonde import openmetrics FILE --data-dir DIR`. Then both servers start on 127.0.0.1
(random ports, the data dirs, an empty config: no scrape targets, no plugins, retention
100y) and the script waits until both are ready, Prometheus' compactor has run its first
cycle (a minute after start) and both processes are idle.

Queries go to /api/v1/query_range on both servers with identical parameters: by default
the whole range minus the first 5 m (so every rate window is full) at --step. Per query:
--warmup requests to each server, then --rounds rounds (more for a short query, so that
each server spends ~3 s on it; at most 100) that alternate the order (P,S then S,P, ...);
each request is timed on the client (until the response body is fully read) and the
server's CPU (utime+stime of the whole process from /proc/<pid>/stat, 10 ms ticks) is read
around it. The answers are compared first: the same series (label sets), the same
timestamps, values within 1e-9 relative; a query whose answers differ is flagged.

Reported per query: input series (what the selectors touch), steps, series x steps,
median wall time and ns per series-step (median wall / (series x steps)) for each server,
mean server CPU per request (10 ms ticks averaged over the rounds), and the
sonde / Prometheus ratios (wall and CPU). Besides the issue's two queries (`sum by` over
10k series, `rate` over 100) there are usual dashboard shapes, one short range (the last
30 m at 15 s) and three diagnostics that tell where the time goes: `count(bench_gauge)`
over the range (selection, decoding and the lookback per step, with the cheapest
aggregation), `count(bench_gauge)` at one step (finding the series and their newest
sample; ns per series) and `sum(count_over_time(bench_gauge[<duration>]))` at one step
(every sample decoded once; ns per sample).

Usage:
  benches/query_vs_prometheus.py [--series 10000] [--interval 15s] [--duration 6h]
      [--step 30s] [--rounds 10] [--warmup 2] [--queries sum_by,rate,...] [--markdown]
      [--work DIR] [--keep] [--keep-file] [--prometheus-only]
--work DIR keeps both loaded stores in DIR and reuses them on the next run with the same
data parameters (--keep-file also keeps the OpenMetrics file). Needs the Debian package
prometheus (2.42); installs it with apt-get when missing and running as root. SONDE_BIN
overrides target/release/sonde; without a sonde that answers /api/v1/query_range, only
Prometheus is measured and the reason is printed.
"""
import argparse, atexit, json, math, os, shutil, signal, socket, statistics, subprocess, sys
import tempfile, time, urllib.error, urllib.parse, urllib.request
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "benches", "gen_openmetrics.py")
SONDE = os.environ.get("SONDE_BIN", os.path.join(ROOT, "target/release/sonde"))
TICK = os.sysconf("SC_CLK_TCK")
ALIGN = 6 * 3600  # sonde's import window and Prometheus' second compaction level
RATE_WINDOW = 300  # the [5m] of the rate queries; the queried range starts this late
MIN_SECONDS, MAX_ROUNDS = 3.0, 100  # rounds for short queries: see bench_query

# --------------------------------------------------------------------------------------
# processes, ports, HTTP, /proc

_children = []


def _stop_all():
    for p in reversed(_children):
        stop(p)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def spawn(argv, log, **kw):
    p = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, **kw)
    _children.append(p)
    return p


def stop(p, timeout=60):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _children:
        _children.remove(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=600):
    """(status, body bytes); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(base, proc, log, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = open(log, errors="replace").read()[-3000:]
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if http_get(base + "/-/ready", timeout=10)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base}/-/ready did not answer 200 within {timeout}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: all threads


def wait_idle(servers, quiet=0.03, window=3.0, times=2, timeout=600):
    """Until every server used less than `quiet` CPU seconds in `times` consecutive
    `window`s: no compaction or start-up work left to disturb the measurements."""
    deadline = time.time() + timeout
    calm = 0
    while time.time() < deadline:
        before = {s.name: cpu_seconds(s.proc.pid) for s in servers}
        time.sleep(window)
        used = {s.name: cpu_seconds(s.proc.pid) - before[s.name] for s in servers}
        calm = calm + 1 if all(u < quiet for u in used.values()) else 0
        if calm >= times:
            return
    print(f"  warning: servers not idle after {timeout}s; measuring anyway", flush=True)


def parse_duration(s):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for u in ("ms", "s", "m", "h", "d"):
        if s.endswith(u) and s[:-len(u)].isdigit():
            return int(s[:-len(u)]) * units[u]
    raise argparse.ArgumentTypeError(f"bad duration {s!r} (use e.g. 15s, 6h)")


# --------------------------------------------------------------------------------------
# data

def data_params(args):
    duration = parse_duration(args.duration)
    start = (int(time.time()) - duration - 2 * 3600) // ALIGN * ALIGN
    return {"series_per_metric": args.series, "interval": args.interval, "duration": args.duration,
            "seed": args.seed, "start": start}


def prepare(args, work):
    """Generate and load the data, or reuse what a previous run left in `work`.
    Returns (params, prometheus db dir, sonde data dir or a reason it is missing)."""
    meta_path = os.path.join(work, "meta.json")
    want = data_params(args)
    if os.path.exists(meta_path):
        have = json.load(open(meta_path))
        keys = [k for k in want if k != "start"]  # start moves with the clock
        same = all(have.get(k) == want[k] for k in keys)
        if not same:
            print(f"{work} holds data with other parameters; generating again", flush=True)
        elif "sonde_data" not in have and sonde_missing() is None:
            print(f"{work} has no sonde data yet (sonde can import now); generating again", flush=True)
        else:
            print(f"reusing the data in {work} (start {have['start']})", flush=True)
            return have, os.path.join(work, "prometheus"), have.get("sonde_data") or have.get("sonde_missing")
        for d in ("prometheus", "sonde", "data.om", "meta.json"):
            p = os.path.join(work, d)
            shutil.rmtree(p) if os.path.isdir(p) else (os.path.exists(p) and os.remove(p))
    om = os.path.join(work, "data.om")
    argv = [sys.executable, GEN, "synthetic", "-o", om, "--series", str(2 * args.series),
            "--interval", args.interval, "--duration", args.duration, "--seed", str(args.seed),
            "--start", str(want["start"])]
    t0 = time.perf_counter()
    r = subprocess.run(argv, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"generator failed:\n{r.stderr}")
    print(f"  generated {os.path.getsize(om) / 1e6:,.0f} MB in {time.perf_counter() - t0:.0f}s: "
          f"{r.stderr.strip().splitlines()[-1]}", flush=True)

    db = os.path.join(work, "prometheus")
    t0 = time.perf_counter()
    run_logged(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, db], os.path.join(work, "promtool.log"))
    print(f"  promtool create-blocks-from openmetrics: {time.perf_counter() - t0:.0f}s", flush=True)

    sonde_dir = os.path.join(work, "sonde")
    why = sonde_missing()
    if why is None:
        t0 = time.perf_counter()
        try:
            run_logged([SONDE, "import", "openmetrics", om, "--data-dir", sonde_dir], os.path.join(work, "sonde-import.log"))
            print(f"  sonde import openmetrics: {time.perf_counter() - t0:.0f}s", flush=True)
            want["sonde_data"] = sonde_dir
        except RuntimeError as e:
            why = str(e)
    if why is not None:
        print(f"  sonde: {why}", flush=True)
        want["sonde_missing"] = why
    if not args.keep_file:
        os.remove(om)
    json.dump(want, open(meta_path, "w"))
    return want, db, want.get("sonde_data") or why


def run_logged(argv, log):
    with open(log, "wb") as out:
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = open(log, errors="replace").read()[-2000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{tail}")


def sonde_missing():
    if not os.path.exists(SONDE):
        return f"{SONDE} does not exist: build it with `cargo build --release -p sonde`"
    r = subprocess.run([SONDE, "import", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        return "this sonde has no `import openmetrics` subcommand"
    return None


# --------------------------------------------------------------------------------------
# servers

class Server:
    def __init__(self, name, proc, base):
        self.name, self.proc, self.base = name, proc, base


def start_prometheus(db, work):
    cfg = os.path.join(work, "prometheus.yml")
    open(cfg, "w").close()  # no scrape targets, no rules
    port = free_port()
    log = os.path.join(work, "prometheus.log")
    p = spawn(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={db}",
               "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"], log, cwd=work)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, p, log)
    return Server("Prometheus", p, base)


def start_sonde(data, work):
    cfg = os.path.join(work, "sonde.toml")
    with open(cfg, "w") as f:
        f.write('[storage]\nretention = "100y"\n')
    plugins = os.path.join(work, "plugins.toml")
    open(plugins, "w").close()  # no plugin instances
    plugin_dir = os.path.join(work, "no-plugins")
    os.makedirs(plugin_dir, exist_ok=True)
    port = free_port()
    log = os.path.join(work, "sonde.log")
    p = spawn([SONDE, "run", "--config", cfg, "--plugins", plugins, "--plugin-dir", plugin_dir,
               "--data-dir", data, "--listen", f"127.0.0.1:{port}"], log, cwd=work)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, p, log)
    return Server("sonde", p, base)


def prometheus_compacted(srv, started, timeout=600):
    """Wait for the compactor's first cycle (a minute after start), as a server that has
    been running would have its blocks; then the caller waits for idle CPU."""
    deadline = started + timeout
    while time.time() < deadline:
        _, body = http_get(srv.base + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("prometheus_tsdb_compactions_triggered_total "):
                if float(line.split()[1]) >= 1:
                    return
        time.sleep(2)


def prometheus_blocks(db):
    out = []
    for name in sorted(os.listdir(db)):
        meta = os.path.join(db, name, "meta.json")
        if os.path.isfile(meta):
            m = json.load(open(meta))
            out.append(round((m["maxTime"] - m["minTime"]) / 3.6e6, 2))
    return out


# --------------------------------------------------------------------------------------
# queries

class Query(NamedTuple):
    key: str
    expr: str
    series: int  # input series: what the selectors touch
    why: str
    unit: str = "series-step"  # "series-step": ns per series x steps; else one step, ns per unit
    last: int = 0  # only the last `last` seconds of the data (0: all but the first 5 m)
    step: int = 0  # 0: --step


def queries(n, duration):
    """The benchmark's queries. `bench_gauge` and `bench_counter_total` have n series
    each, 100 per instance; the counters are on the first n/100 instances. A query with
    unit "series" or "sample" is evaluated at one step (the end of the data)."""
    return [
        Query("sum_by", "sum by (instance) (bench_gauge)", n, "the issue's aggregation: n series into n/100 groups"),
        Query("rate", 'rate(bench_counter_total{instance="host-000"}[5m])', 100,
              "the issue's rate: 100 series, 20 samples per window"),
        Query("sum_rate", "sum by (instance) (rate(bench_counter_total[5m]))", n,
              "the usual dashboard shape over every counter"),
        Query("avg_by", "avg by (instance) (bench_gauge)", n, "another aggregation"),
        Query("topk", "topk(5, bench_gauge)", n, "a heap per step over every series"),
        Query("max_over_time", "max by (instance) (max_over_time(bench_gauge[5m]))", n,
              "a range function over gauges"),
        Query("sum_by_30m", "sum by (instance) (bench_gauge)", n,
              "a short range (the last 30 m at 15 s), as a dashboard's default view asks",
              last=1800, step=15),
        Query("count", "count(bench_gauge)", n, "diagnostic: selection, decoding and lookback, trivial aggregation"),
        Query("selector", 'bench_gauge{instance="host-%03d"}' % (n // 100), 100,
              "diagnostic: 100 raw series returned (JSON encoding of every point)"),
        Query("lookup", "count(bench_gauge)", n,
              "diagnostic: find the series and their last sample, at one step; per series", unit="series"),
        Query("scan", f"sum(count_over_time(bench_gauge[{duration}]))", n,
              "diagnostic: every gauge sample read once, at one step; per sample", unit="sample"),
    ]


def query_url(srv, q, start, end, step):
    return srv.base + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": q, "start": start, "end": end, "step": step})


def decode(body):
    """{label tuple: [(t, v)]} of a matrix answer; raises ValueError for anything else."""
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
    data = doc["data"]
    if data["resultType"] != "matrix":
        raise ValueError(f"resultType {data['resultType']}, expected matrix")
    out = {}
    for s in data["result"]:
        key = tuple(sorted(s["metric"].items()))
        out[key] = [(float(t), float(v)) for t, v in s["values"]]
    return out


def compare(a, b):
    """None when the two matrices agree, else a description of the first difference."""
    if a.keys() != b.keys():
        only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
        return (f"series differ: {len(a)} vs {len(b)}; only in Prometheus e.g. {sorted(only_a)[:1]}, "
                f"only in sonde e.g. {sorted(only_b)[:1]}")
    for k in a:
        pa, pb = a[k], b[k]
        if len(pa) != len(pb):
            return f"{dict(k)}: {len(pa)} vs {len(pb)} points"
        for (ta, va), (tb, vb) in zip(pa, pb):
            if ta != tb:
                return f"{dict(k)}: timestamp {ta} vs {tb}"
            if not (va == vb or (math.isnan(va) and math.isnan(vb))
                    or math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9)):
                return f"{dict(k)} at {ta}: {va!r} vs {vb!r}"
    return None


def timed(srv, url):
    c0 = cpu_seconds(srv.proc.pid)
    t0 = time.perf_counter()
    status, body = http_get(url)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(srv.proc.pid) - c0
    return status, body, wall, cpu


def bench_query(servers, query, rng, units, args):
    """Times `query` on every server over rng = (start, end, step); ns per unit = median
    wall / units (series x steps, or series or samples for a one-step query)."""
    start, end, step = rng
    q = query.expr
    url = {s.name: query_url(s, q, start, end, step) for s in servers}
    res = {"key": query.key, "query": q, "series": query.series, "steps": (end - start) // step + 1,
           "units": units, "unit": query.unit, "last": query.last, "step": step, "per": {}}
    answers, first = {}, {}
    for s in servers:
        status, body, first[s.name], _ = timed(s, url[s.name])
        try:
            if status != 200:
                raise ValueError(f"HTTP {status}: {body[:300].decode(errors='replace')}")
            answers[s.name] = decode(body)
        except ValueError as e:
            res["per"][s.name] = {"error": str(e)}
    live = [s for s in servers if "error" not in res["per"].get(s.name, {})]
    if answers:
        res["out_series"] = len(next(iter(answers.values())))
    if len(answers) == 2:
        res["mismatch"] = compare(answers["Prometheus"], answers["sonde"])
    slowest = max((first[s.name] for s in live), default=0.0)
    for s in live:
        for _ in range(args.warmup - 1):
            slowest = max(slowest, timed(s, url[s.name])[2])
    # Short queries get more rounds (up to MAX_ROUNDS), so that each server spends about
    # MIN_SECONDS on each: a 20 ms query is at the mercy of one context switch.
    rounds = max(args.rounds, min(MAX_ROUNDS, int(MIN_SECONDS / max(slowest, 1e-3))))
    res["rounds"] = rounds
    samples = {s.name: [] for s in live}
    for r in range(rounds):
        order = live if r % 2 == 0 else live[::-1]
        for s in order:
            status, body, wall, cpu = timed(s, url[s.name])
            if status != 200:
                raise SystemExit(f"{s.name} answered {status} to {q} after answering 200 before")
            samples[s.name].append((wall, cpu))
    for s in live:
        walls = [w for w, _ in samples[s.name]]
        wall = statistics.median(walls)
        cpu = statistics.fmean(c for _, c in samples[s.name])  # 10 ms ticks: the mean is unbiased
        res["per"][s.name] = {"wall_ms": wall * 1e3, "min_ms": min(walls) * 1e3, "max_ms": max(walls) * 1e3,
                              "cpu_ms": cpu * 1e3, "ns_per": wall * 1e9 / units}
    return res


# --------------------------------------------------------------------------------------
# report

def fmt(v, nd=1):
    return "—" if v is None else f"{v:,.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def report(results, markdown, default_step):
    hdr = ["query", "series", "steps", "series×steps", "Prometheus ms", "sonde ms",
           "Prometheus ns/series-step", "sonde ns/series-step", "Prometheus CPU ms", "sonde CPU ms",
           "sonde ÷ Prometheus (wall)", "(CPU)"]
    rows = []
    for r in results:
        p, s = r["per"].get("Prometheus", {}), r["per"].get("sonde", {})
        if r["unit"] != "series-step":
            note = f" (one step; ns per {r['unit']})"
        elif r["last"]:
            note = f" (last {r['last'] // 60} m, step {r['step']} s)"
        elif r["step"] != default_step:
            note = f" (step {r['step']} s)"
        else:
            note = ""
        if r.get("mismatch"):
            note += " ⚠ answers differ"
        elif "error" in s:
            note += " (sonde: error)"
        rows.append([f"`{r['query']}`{note}", f"{r['series']:,}", f"{r['steps']:,}", f"{r['series'] * r['steps']:,}",
                     fmt(p.get("wall_ms")), fmt(s.get("wall_ms")), fmt(p.get("ns_per"), 0), fmt(s.get("ns_per"), 0),
                     fmt(p.get("cpu_ms")), fmt(s.get("cpu_ms")),
                     fmt(ratio(s.get("wall_ms"), p.get("wall_ms")), 2), fmt(ratio(s.get("cpu_ms"), p.get("cpu_ms")), 2)])
    if markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for r in results:
        for name, d in r["per"].items():
            if "error" in d:
                print(f"  {r['key']}: {name} failed: {d['error']}")
        if r.get("mismatch"):
            print(f"  {r['key']}: answers differ: {r['mismatch']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10000, help="series per metric (gauges and counters each)")
    ap.add_argument("--interval", default="15s")
    ap.add_argument("--duration", default="6h")
    ap.add_argument("--step", default="30s")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queries", help="comma-separated keys (default: all): "
                    + ",".join(q.key for q in queries(100, "1h")))
    ap.add_argument("--work", help="directory for the data; reused by later runs with the same parameters")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--keep-file", action="store_true", help="keep the OpenMetrics file")
    ap.add_argument("--prometheus-only", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.series % 100:
        raise SystemExit("--series must be a multiple of 100 (100 series per instance)")
    qs = queries(args.series, args.duration)
    if args.queries:
        wanted = args.queries.split(",")
        unknown = set(wanted) - {q.key for q in qs}
        if unknown:
            raise SystemExit(f"unknown queries {sorted(unknown)}; known: {[q.key for q in qs]}")
        qs = [q for q in qs if q.key in wanted]

    if not shutil.which("prometheus") or not shutil.which("promtool"):
        if os.geteuid() != 0:
            raise SystemExit("missing prometheus: apt-get install -y prometheus")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus"], check=True, env=env, stdout=subprocess.DEVNULL)
    pv = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "prometheus"], capture_output=True, text=True).stdout
    sv = subprocess.run([SONDE, "--version"], capture_output=True, text=True).stdout.strip() if os.path.exists(SONDE) else "not built"
    print(f"versions: prometheus {pv}, sonde {sv} ({SONDE})", flush=True)

    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="sonde-query-bench-")
        if not args.keep:
            atexit.register(shutil.rmtree, work, True)
    print(f"work dir {work}", flush=True)
    params, db, sonde_data = prepare(args, work)
    data_start = params["start"]
    data_end = data_start + parse_duration(params["duration"]) - parse_duration(params["interval"])

    started = time.time()
    servers = [start_prometheus(db, work)]
    sonde_why = None
    if args.prometheus_only:
        sonde_why = "--prometheus-only"
    elif not os.path.isdir(sonde_data or ""):
        sonde_why = sonde_data
    elif sonde_missing():
        sonde_why = sonde_missing()
    else:
        try:
            servers.append(start_sonde(sonde_data, work))
        except RuntimeError as e:
            sonde_why = f"did not start: {e}"
    if sonde_why:
        print(f"sonde left out: {sonde_why}", flush=True)
    else:
        status, body = http_get(servers[1].base + "/api/v1/query_range?query=1&start=0&end=1&step=1")
        if status == 404:
            print("sonde left out: its /api/v1/query_range answers 404 (the PromQL HTTP API is not in "
                  "this binary yet; rebuild with `cargo build --release -p sonde` once it lands)", flush=True)
            stop(servers.pop().proc)
    print("waiting for Prometheus' first compaction cycle and for both servers to be idle ...", flush=True)
    prometheus_compacted(servers[0], started)
    wait_idle(servers)
    print(f"  Prometheus blocks (hours): {prometheus_blocks(db)}", flush=True)

    step = parse_duration(args.step)
    start = data_start + RATE_WINDOW
    end = start + (data_end - start) // step * step
    print(f"range {start}..{end} step {step}s; at least {args.rounds} rounds after {args.warmup} warm-up; "
          f"data: 2 x {args.series:,} series at {params['interval']} over {params['duration']}", flush=True)
    results = []
    samples_per_series = parse_duration(params["duration"]) // parse_duration(params["interval"])
    for q in qs:
        if q.unit != "series-step":
            rng = (data_end, data_end, step)
            units = q.series * (samples_per_series if q.unit == "sample" else 1)
        else:
            qstep = q.step or step
            qstart = data_end - q.last if q.last else start
            qend = qstart + (data_end - qstart) // qstep * qstep
            rng = (qstart, qend, qstep)
            units = q.series * ((qend - qstart) // qstep + 1)
        r = bench_query(servers, q, rng, units, args)
        per = ", ".join(f"{name} {d['wall_ms']:.1f} ms (min {d['min_ms']:.1f}, max {d['max_ms']:.1f}), "
                        f"CPU {d['cpu_ms']:.1f} ms" if "error" not in d else f"{name} error"
                        for name, d in r["per"].items())
        print(f"  {q.key}: {r['series']:,} series x {r['steps']} steps -> {r.get('out_series', '?')} series, "
              f"{r.get('rounds', 0)} rounds; {per}"
              + (f"; DIFFER: {r['mismatch']}" if r.get("mismatch") else ""), flush=True)
        results.append(r)
    print()
    report(results, args.markdown, step)
    for s in servers:
        stop(s.proc)


if __name__ == "__main__":
    main()
