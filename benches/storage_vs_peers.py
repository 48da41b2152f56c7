#!/usr/bin/env python3
"""sonde's storage vs Prometheus 2.42 and VictoriaMetrics 1.79, side by side in one run.

Two modes (everything on 127.0.0.1, random ports, temp dirs, processes stopped at exit):

disk  For each data set (benches/gen_openmetrics.py: `synthetic`, 10k series at 1 s for
      2 h; `node`, a node_exporter scrape evolved at 15 s for 24 h), the same OpenMetrics
      file goes to:
        - promtool: `promtool tsdb create-blocks-from openmetrics FILE DIR`, timed (wall;
          CPU and peak RSS of that process from wait4's rusage); bytes of its blocks,
          chunks and index apart. promtool writes 2 h blocks (tsdb.DefaultBlockDuration);
          when it wrote more than one, `prometheus` is then started on DIR (default
          retention 15 d, so blocks compact up to 18 h: 10 % of retention over the
          2 h x 3^n ranges; the newest block is never planned) and left to compact, and
          the blocks are measured again: "after compaction".
        - VictoriaMetrics: `victoria-metrics -storageDataPath DIR` (retention 100y, so any
          --start is kept); the file converted to its JSON-line import format (one line
          per series and batch, timestamps in ms exactly as promtool computes them) and
          POSTed to /api/v1/import; then /internal/force_flush, /internal/force_merge,
          wait for merges to finish, stop with SIGINT (it flushes on exit). Bytes of
          data/ and indexdb/ apart (cache/ is rebuildable and left out). VM's CPU during
          import+flush is read from /proc (the Python conversion is not counted).
        - sonde: `target/release/sonde import openmetrics FILE --data-dir DIR` (timed
          like promtool), bytes under DIR. Skipped with a message while the subcommand
          does not exist.
      Bytes are apparent file sizes (du --apparent-size -b); samples are counted while
      converting the file and checked against promtool's and VictoriaMetrics' own counts.

rss   Serves the synthetic series (same names and value models) as a plain /metrics
      endpoint (a child Python process; values change on every scrape) at 10k and 100k
      series, lets `prometheus` scrape it every 1 s for --minutes, and reports its RSS
      per series (whole process RSS / series, and the marginal figure between the two
      sizes) and CPU per 1k samples (utime+stime delta over
      prometheus_tsdb_head_samples_appended_total delta, after a warm-up). Then it stops
      Prometheus and starts it again on the same directory to time WAL replay (its
      "WAL replay completed" log line; samples = samples appended before the stop).
      Then sonde scrapes the same endpoint (same seed) with the prometheus plugin for
      the same window: RSS (whole process, and the plugin's linear memory), CPU per 1k
      samples appended (sonde_head_samples_appended_total).

Usage:
  benches/storage_vs_peers.py disk [--sets synthetic,node] [--series 10000] [--duration 2h]
                                   [--node-duration 24h] [--file FILE] [--keep] [--markdown]
  benches/storage_vs_peers.py rss  [--sizes 10000,100000] [--minutes 3] [--warmup 30]
Needs the Debian packages prometheus (2.42) and victoria-metrics (1.79); installs them
with apt-get when missing and running as root. SONDE_BIN overrides target/release/sonde.
"""
import argparse, atexit, json, os, random, re, shutil, signal, socket, subprocess, sys
import tempfile, threading, time, urllib.error, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "benches", "gen_openmetrics.py")
SONDE = os.environ.get("SONDE_BIN", os.path.join(ROOT, "target/release/sonde"))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# --------------------------------------------------------------------------------------
# processes, ports, HTTP, /proc

_children = []


def _stop_all():
    for p in reversed(_children):
        stop(p)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def spawn(argv, log=None, **kw):
    out = open(log, "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
    _children.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=120):
    if p.poll() is None:
        p.send_signal(sig)
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


def http(url, data=None, timeout=600):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def wait_http(url, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode} before answering {url}")
        try:
            return http(url, timeout=10)
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def metric_sum(text, name):
    """Sum of every sample of `name` (any labels) in an exposition."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def tree_bytes(path):
    """Apparent size of every regular file under path (du --apparent-size -b)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(dirpath, f)):
                total += st.st_size
    return total


def run_timed(argv, log):
    """Run to completion; (wall s, CPU s, peak RSS bytes) of that child alone (wait4)."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _children.append(p)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        _children.remove(p)
    if p.returncode != 0:
        tail = open(log, errors="replace").read()[-2000:]
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{tail}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


# --------------------------------------------------------------------------------------
# packages and versions

def ensure_packages():
    missing = [b for b in ("promtool", "prometheus", "victoria-metrics") if not shutil.which(b)]
    if missing:
        if os.geteuid() != 0:
            raise SystemExit(f"missing {missing}: apt-get install -y prometheus victoria-metrics")
        print(f"installing prometheus victoria-metrics (missing {', '.join(missing)})", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus", "victoria-metrics"],
                       check=True, env=env, stdout=subprocess.DEVNULL)


def versions():
    out = {}
    for pkg in ("prometheus", "victoria-metrics", "prometheus-node-exporter"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "not installed"
    if os.path.exists(SONDE):
        r = subprocess.run([SONDE, "--version"], capture_output=True, text=True)
        out["sonde"] = (r.stdout.strip() or "?") + f" ({SONDE})"
    else:
        out["sonde"] = f"not built ({SONDE})"
    return out


def print_versions():
    v = versions()
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), flush=True)
    for k, want in (("prometheus", "2.42"), ("victoria-metrics", "1.79")):
        if not v[k].startswith(want):
            print(f"  note: the storage issue names {k} {want}; this run uses {v[k]}")
    return v


# --------------------------------------------------------------------------------------
# data sets

def generate(kind, path, args):
    argv = [sys.executable, GEN, kind, "-o", path, "--seed", str(args.seed)]
    if kind == "synthetic":
        argv += ["--series", str(args.series), "--duration", args.duration]
    else:
        argv += ["--duration", args.node_duration]
    if args.start is not None:
        argv += ["--start", str(args.start)]
    t0 = time.perf_counter()
    r = subprocess.run(argv, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"generator failed:\n{r.stderr}")
    line = r.stderr.strip().splitlines()[-1]
    print(f"  generated {os.path.getsize(path) / 1e6:,.0f} MB in {time.perf_counter() - t0:.0f}s: {line}", flush=True)
    return line


# --------------------------------------------------------------------------------------
# Prometheus

def prom_blocks(dbdir):
    """[(ulid, chunks bytes, index bytes, other bytes, meta)] for every block in dbdir."""
    out = []
    for name in sorted(os.listdir(dbdir)):
        meta_path = os.path.join(dbdir, name, "meta.json")
        if not os.path.isfile(meta_path):
            continue
        d = os.path.join(dbdir, name)
        chunks = tree_bytes(os.path.join(d, "chunks"))
        index = os.path.getsize(os.path.join(d, "index"))
        other = tree_bytes(d) - chunks - index
        out.append((name, chunks, index, other, json.load(open(meta_path))))
    return out


def summarize_blocks(blocks):
    ranges = sorted({(b[4]["maxTime"] - b[4]["minTime"]) for b in blocks})
    return {"blocks": len(blocks), "data": sum(b[1] for b in blocks), "index": sum(b[2] for b in blocks),
            "other": sum(b[3] for b in blocks), "samples": sum(b[4]["stats"]["numSamples"] for b in blocks),
            "series": max((b[4]["stats"]["numSeries"] for b in blocks), default=0),
            "block_spans_h": [round(r / 3.6e6, 2) for r in ranges]}


def run_promtool(path, work):
    db = os.path.join(work, "prometheus")
    wall, cpu, peak = run_timed(["promtool", "tsdb", "create-blocks-from", "openmetrics", path, db],
                                os.path.join(work, "promtool.log"))
    res = summarize_blocks(prom_blocks(db))
    res.update(wall=wall, cpu=cpu, peak_rss=peak, dir=db)
    return res


def prometheus_config(path, targets=(), interval="1s"):
    with open(path, "w") as f:
        f.write(f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n")
        if targets:
            f.write("scrape_configs:\n  - job_name: bench\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")


def start_prometheus(db, work, targets=(), tag="prometheus"):
    cfg = os.path.join(work, f"{tag}.yml")
    prometheus_config(cfg, targets)
    port = free_port()
    log = os.path.join(work, f"{tag}.log")
    p = spawn(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={db}",
               f"--web.listen-address=127.0.0.1:{port}"], log=log, cwd=work)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/ready", p)
    return p, base, log


def prometheus_compact(db, work, timeout=900):
    """Let a Prometheus server compact promtool's blocks the way it would in production:
    its compactor runs once a minute and keeps the newest block out of a plan."""
    p, base, _ = start_prometheus(db, work, tag="prometheus-compact")
    try:
        deadline = time.time() + timeout
        last, stable_since = None, time.time()
        time.sleep(65)  # the first compaction cycle starts a minute after start-up
        while time.time() < deadline:
            m = http(base + "/metrics")
            # compactions_triggered_total ticks every cycle; compactions_total only on work.
            state = (len(prom_blocks(db)), metric_sum(m, "prometheus_tsdb_compactions_total"))
            running = metric_sum(m, "prometheus_tsdb_compaction_populating_block") or 0
            if state != last or running:
                last, stable_since = state, time.time()
            elif time.time() - stable_since > 70:  # one more cycle without change
                break
            time.sleep(5)
    finally:
        stop(p)
    res = summarize_blocks(prom_blocks(db))
    return res


# --------------------------------------------------------------------------------------
# VictoriaMetrics

LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UNESC = re.compile(r"\\(.)")
JSON_NUM_START = set("-0123456789")


def om_key_to_json(key):
    """`name{a="x"}` -> the JSON `metric` object of VictoriaMetrics' import format."""
    brace = key.find("{")
    name = key if brace < 0 else key[:brace]
    obj = {"__name__": name}
    if brace >= 0:
        for k, v in LABEL.findall(key[brace:]):
            if "\\" in v:
                v = UNESC.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
            if v:
                obj[k] = v
    return json.dumps(obj, separators=(",", ":"))


def om_to_vm_batches(path, probe, batch_samples=500_000):
    """Yield (JSON-lines bytes, samples, skipped) batches from an OpenMetrics file.
    Timestamps become ms the way promtool computes them: int64(float(seconds) * 1000).
    `probe` gets the first series' key, sample count and first/last timestamps, to check
    afterwards that VictoriaMetrics kept them."""
    keys, buf, n, skipped = {}, {}, 0, 0
    probe_key = None
    with open(path, "r", buffering=1 << 22) as f:
        for line in f:
            if line[0] == "#":
                continue
            key, val, ts = line.rsplit(" ", 2)
            ts = ts.rstrip("\n")
            ms = int(ts) * 1000 if ts.isdigit() else int(float(ts) * 1000)
            if val[0] not in JSON_NUM_START or val.endswith("Inf") or val.endswith("inf"):
                v = float(val)
                if v != v or v in (float("inf"), float("-inf")):
                    skipped += 1  # JSON has no NaN/Inf
                    continue
                val = repr(v)
            if probe_key is None:
                probe_key = key
                probe.update(key=key, n=0, first=ms, last=ms)
            if key == probe_key:
                probe["n"] += 1
                probe["last"] = ms
            b = buf.get(key)
            if b is None:
                b = buf[key] = ([], [])
            b[0].append(val)
            b[1].append(ms)
            n += 1
            if n >= batch_samples:
                yield _vm_lines(buf, keys), n, skipped
                buf, n, skipped = {}, 0, 0
    if n:
        yield _vm_lines(buf, keys), n, skipped


def _vm_lines(buf, keys):
    out = []
    for key, (vals, tss) in buf.items():
        m = keys.get(key)
        if m is None:
            m = keys[key] = om_key_to_json(key)
        out.append('{"metric":%s,"values":[%s],"timestamps":[%s]}\n' % (m, ",".join(vals), ",".join(map(str, tss))))
    return "".join(out).encode()


def run_vm(path, work):
    data = os.path.join(work, "victoria-metrics")
    port = free_port()
    p = spawn(["victoria-metrics", f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
               "-retentionPeriod=100y", "-loggerLevel=WARN"],
              log=os.path.join(work, "victoria-metrics.log"), cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", p)
        cpu0, t0 = cpu_seconds(p.pid), time.perf_counter()
        samples = skipped = 0
        post_wall = 0.0
        probe = {}
        for body, n, sk in om_to_vm_batches(path, probe):
            t = time.perf_counter()
            http(base + "/api/v1/import", data=body)
            post_wall += time.perf_counter() - t
            samples += n
            skipped += sk
        http(base + "/internal/force_flush")
        import_cpu, import_wall = cpu_seconds(p.pid) - cpu0, time.perf_counter() - t0
        kept = check_vm_timestamps(base, probe)
        http(base + "/internal/force_merge")
        time.sleep(1)
        deadline = time.time() + 1800
        while time.time() < deadline:
            m = http(base + "/metrics")
            if not (metric_sum(m, "vm_active_force_merges") or 0) and not (metric_sum(m, "vm_active_merges") or 0):
                break
            time.sleep(1)
        http(base + "/internal/force_flush")
        m = http(base + "/metrics")
        vm_rows = metric_sum_type(m, "vm_rows", "storage/")
        total_cpu = cpu_seconds(p.pid) - cpu0
        stop(p, signal.SIGINT, timeout=600)
    finally:
        stop(p, signal.SIGINT, timeout=600)
    dirs = {d: tree_bytes(os.path.join(data, d)) for d in os.listdir(data) if os.path.isdir(os.path.join(data, d))}
    return {"data": dirs.get("data", 0), "index": dirs.get("indexdb", 0),
            "other": sum(v for k, v in dirs.items() if k not in ("data", "indexdb", "cache")),
            "cache": dirs.get("cache", 0), "samples": samples, "skipped": skipped, "vm_rows": vm_rows,
            "import_cpu": import_cpu, "import_wall": import_wall, "post_wall": post_wall,
            "cpu_with_merge": total_cpu, "timestamps_kept": kept, "dir": data}


def check_vm_timestamps(base, probe):
    """Export the first series back and compare its sample count and first/last
    timestamps with the file's: "ok" or what differs."""
    if not probe:
        return "no samples"
    q = urllib.parse.urlencode({"match[]": probe["key"], "start": "0"})
    lines = [json.loads(l) for l in http(f"{base}/api/v1/export?{q}").splitlines() if l.strip()]
    ts = sorted(t for l in lines for t in l["timestamps"])
    got = (len(ts), ts[0] if ts else None, ts[-1] if ts else None)
    want = (probe["n"], probe["first"], probe["last"])
    return "ok" if got == want else f"{probe['key']}: exported (n, first, last) {got}, file {want}"


def metric_sum_type(text, name, type_prefix):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'type="{type_prefix}' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------------------
# sonde

def sonde_import_available():
    if not os.path.exists(SONDE):
        return f"{SONDE} not built (scripts/build)"
    r = subprocess.run([SONDE, "import", "openmetrics", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        return "`sonde import openmetrics` does not exist yet (storage engine in progress)"
    return None


def run_sonde(path, work):
    why = sonde_import_available()
    if why:
        return {"skipped": why}
    data = os.path.join(work, "sonde")
    wall, cpu, peak = run_timed([SONDE, "import", "openmetrics", path, "--data-dir", data],
                                os.path.join(work, "sonde-import.log"))
    parts = {d: tree_bytes(os.path.join(data, d)) for d in sorted(os.listdir(data))
             if os.path.isdir(os.path.join(data, d))}
    return {"total": tree_bytes(data), "parts": parts, "wall": wall, "cpu": cpu, "peak_rss": peak}


# --------------------------------------------------------------------------------------
# disk mode

def disk_one(kind, args, work):
    print(f"\n== {kind} ==", flush=True)
    sub = os.path.join(work, kind)
    os.makedirs(sub)
    if args.file:
        path, desc = os.path.abspath(args.file), f"file {args.file}"
    else:
        path = os.path.join(sub, f"{kind}.om")
        desc = generate(kind, path, args)
    res = {"set": kind, "desc": desc, "file_bytes": os.path.getsize(path)}

    print("  promtool create-blocks-from openmetrics ...", flush=True)
    res["promtool"] = run_promtool(path, sub)
    pt = res["promtool"]
    print(f"    {pt['wall']:.1f}s wall, {pt['cpu']:.1f}s CPU, {pt['blocks']} block(s) of {pt['block_spans_h']} h", flush=True)
    if pt["blocks"] > 1:
        print("  prometheus: compacting promtool's blocks ...", flush=True)
        res["prometheus_compacted"] = prometheus_compact(pt["dir"], sub)
        c = res["prometheus_compacted"]
        print(f"    {c['blocks']} block(s) of {c['block_spans_h']} h", flush=True)

    print("  victoria-metrics import ...", flush=True)
    res["vm"] = run_vm(path, sub)
    vm = res["vm"]
    print(f"    {vm['samples']:,} samples posted, VM rows {vm['vm_rows']:,.0f}, timestamps kept: {vm['timestamps_kept']}, "
          f"{vm['import_cpu']:.1f}s VM CPU (import+flush), {vm['cpu_with_merge']:.1f}s incl. merges", flush=True)

    print("  sonde import openmetrics ...", flush=True)
    res["sonde"] = run_sonde(path, sub)
    if "skipped" in res["sonde"]:
        print(f"    skipped: {res['sonde']['skipped']}", flush=True)
    res["samples"] = vm["samples"] + vm["skipped"]
    for k in ("promtool", "prometheus_compacted"):
        if k in res and res[k]["samples"] != res["samples"]:
            print(f"  WARNING: {k} holds {res[k]['samples']:,} samples, the file {res['samples']:,}")
    if vm["vm_rows"] and abs(vm["vm_rows"] - vm["samples"]) > 0:
        print(f"  note: VictoriaMetrics reports {vm['vm_rows']:,.0f} rows for {vm['samples']:,} samples posted")
    if not args.keep:
        for d in (pt["dir"], vm["dir"], os.path.join(sub, "sonde")):
            shutil.rmtree(d, ignore_errors=True)
    return res


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def disk_report(results, markdown):
    for r in results:
        n = r["samples"]
        print(f"\n{r['set']}: {r['desc']}")
        print(f"  {n:,} samples; OpenMetrics file {r['file_bytes'] / n:.1f} B/sample")
        rows = []
        pt = r["promtool"]
        rows.append((f"Prometheus (promtool, {pt['blocks']}x{'/'.join(map(str, pt['block_spans_h']))} h blocks)",
                     pt["data"], pt["index"], pt["data"] + pt["index"] + pt["other"]))
        if "prometheus_compacted" in r:
            c = r["prometheus_compacted"]
            rows.append((f"Prometheus after compaction ({c['blocks']} blocks, {'/'.join(map(str, c['block_spans_h']))} h)",
                         c["data"], c["index"], c["data"] + c["index"] + c["other"]))
        vm = r["vm"]
        rows.append(("VictoriaMetrics (data / indexdb)", vm["data"], vm["index"], vm["data"] + vm["index"] + vm["other"]))
        s = r["sonde"]
        sonde_total = None if "skipped" in s else s["total"]
        if sonde_total is not None:
            rows.append(("sonde", None, None, sonde_total))
        ref = sonde_total  # without sonde: ratios against the last Prometheus row
        if sonde_total is None:
            ref = rows[1][3] if "prometheus_compacted" in r else rows[0][3]
        hdr = ["system", "data B/sample", "index B/sample", "total B/sample", f"sonde / system" if sonde_total else "system / Prometheus"]
        if markdown:
            print("\n| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
        else:
            print(f"  {hdr[0]:<58} {hdr[1]:>14} {hdr[2]:>15} {hdr[3]:>15} {hdr[4]:>20}")
        for name, data, index, total in rows:
            ratio = fmt_ratio(sonde_total, total) if sonde_total else fmt_ratio(total, ref)
            cells = [name, "–" if data is None else f"{data / n:.3f}", "–" if index is None else f"{index / n:.3f}",
                     f"{total / n:.3f}", ratio]
            if markdown:
                print("| " + " | ".join(cells) + " |")
            else:
                print(f"  {cells[0]:<58} {cells[1]:>14} {cells[2]:>15} {cells[3]:>15} {cells[4]:>20}")
        print(f"  (VictoriaMetrics cache/ not counted: {vm['cache'] / n:.3f} B/sample; "
              f"'other' = meta.json/tombstones/metadata files, included in totals)")
        print("  import:")
        print(f"    promtool        {pt['wall']:8.1f} s wall {pt['cpu']:8.1f} s CPU  "
              f"{pt['cpu'] * 1e6 / n:7.3f} ms CPU per 1k samples  peak RSS {pt['peak_rss'] / 2**20:,.0f} MiB")
        print(f"    VictoriaMetrics {vm['import_wall']:8.1f} s wall {vm['import_cpu']:8.1f} s CPU  "
              f"{vm['import_cpu'] * 1e6 / n:7.3f} ms CPU per 1k samples (server side only; wall includes"
              f" the Python conversion)")
        if sonde_total is not None:
            print(f"    sonde           {s['wall']:8.1f} s wall {s['cpu']:8.1f} s CPU  "
                  f"{s['cpu'] * 1e6 / n:7.3f} ms CPU per 1k samples  peak RSS {s['peak_rss'] / 2**20:,.0f} MiB"
                  f"   sonde/promtool: wall {s['wall'] / pt['wall']:.2f}, CPU {s['cpu'] / pt['cpu']:.2f}")
            print(f"    sonde data dir: " + ", ".join(f"{k} {v / n:.3f} B/sample" for k, v in s["parts"].items()))
        else:
            print(f"    sonde           skipped: {s['skipped']}")


def cmd_disk(args):
    ensure_packages()
    print_versions()
    work = tempfile.mkdtemp(prefix="sonde-storage-bench-", dir=args.tmpdir)
    print(f"work dir {work}{' (kept)' if args.keep else ''}")
    try:
        sets = [s.strip() for s in args.sets.split(",") if s.strip()]
        if args.file and len(sets) != 1:
            raise SystemExit("--file needs exactly one --sets entry (its name is only a label)")
        results = [disk_one(kind, args, work) for kind in sets]
        disk_report(results, args.markdown)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"versions": versions(), "results": results}, f, indent=1, default=str)
    finally:
        _stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------
# rss mode: a /metrics endpoint with the synthetic series

def cmd_serve(args):
    """Child process: serve N synthetic series; each scrape advances every value."""
    import http.server
    rng = random.Random(args.seed)
    n = args.series
    half = n // 2
    prefixes = [f'bench_counter_total{{host="host-{i // 100:03d}",series="{i}"}} ' for i in range(half)]
    prefixes += [f'bench_gauge{{host="host-{i // 100:03d}",series="{i}"}} ' for i in range(half, n)]
    counters = [rng.randrange(1_000_000) for _ in range(half)]
    gauges = [rng.randrange(-100_000, 100_000) for _ in range(half, n)]
    inc, step = range(101), range(-100, 101)
    head_c = "# HELP bench_counter_total Synthetic counter.\n# TYPE bench_counter_total counter\n"
    head_g = "# HELP bench_gauge Synthetic gauge.\n# TYPE bench_gauge gauge\n"
    lock = threading.Lock()

    def render():
        nonlocal counters, gauges
        counters = [c + d for c, d in zip(counters, rng.choices(inc, k=half))]
        gauges = [g + d for g, d in zip(gauges, rng.choices(step, k=n - half))]
        body = [head_c]
        body += [f"{p}{v}\n" for p, v in zip(prefixes, counters)]
        body.append(head_g)
        body += [f"{p}{v / 100:.2f}\n" for p, v in zip(prefixes[half:], gauges)]
        return "".join(body).encode()

    class H(http.server.BaseHTTPRequestHandler):
        # HTTP/1.1 keeps the connection open between scrapes, as node_exporter and every
        # other Go exporter do; the default (HTTP/1.0) makes each scrape a new TCP connection.
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with lock:
                body = render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), H)
    srv.serve_forever()


def parse_go_duration(s):
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(ns|µs|us|ms|s|m|h)", s):
        total += float(num) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def replay_time(log_path, since):
    with open(log_path, errors="replace") as f:
        f.seek(since)
        for line in f:
            if "WAL replay completed" in line:
                m = re.search(r"total_replay_duration=(\S+)", line)
                w = re.search(r"wal_replay_duration=(\S+)", line)
                return parse_go_duration(m.group(1)) if m else None, parse_go_duration(w.group(1)) if w else None
    return None, None


def rss_one(n, args, work):
    sub = os.path.join(work, f"rss-{n}")
    os.makedirs(sub)
    port = free_port()
    server = spawn([sys.executable, os.path.abspath(__file__), "_serve", "--series", str(n), "--port", str(port),
                    "--seed", str(args.seed)], log=os.path.join(sub, "serve.log"))
    wait_http(f"http://127.0.0.1:{port}/metrics", server)
    db = os.path.join(sub, "prometheus")
    prom, base, log = start_prometheus(db, sub, targets=[f"127.0.0.1:{port}"])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (metric_sum(http(base + "/metrics"), "prometheus_tsdb_head_series") or 0) >= n:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"Prometheus did not reach {n} head series in 120 s")
        time.sleep(args.warmup)
        m0 = http(base + "/metrics")
        cpu0, s0, t0 = cpu_seconds(prom.pid), metric_sum(m0, "prometheus_tsdb_head_samples_appended_total"), time.time()
        seen, end = [], t0 + args.minutes * 60
        while time.time() < end:
            time.sleep(5)
            seen.append(rss_bytes(prom.pid))
        rss_max, rss_avg = max(seen), sum(seen) / len(seen)
        m1 = http(base + "/metrics")
        cpu1, s1, t1 = cpu_seconds(prom.pid), metric_sum(m1, "prometheus_tsdb_head_samples_appended_total"), time.time()
        rss = rss_bytes(prom.pid)
        series = metric_sum(m1, "prometheus_tsdb_head_series")
        res = {"series": n, "head_series": series, "rss": rss, "rss_max": rss_max, "rss_avg": rss_avg,
               "cpu_per_1k_ms": (cpu1 - cpu0) * 1e6 / (s1 - s0), "samples_per_s": (s1 - s0) / (t1 - t0),
               "cpu_share": (cpu1 - cpu0) / (t1 - t0)}
        # WAL replay: graceful stop, start again on the same directory, read the log line.
        appended = metric_sum(http(base + "/metrics"), "prometheus_tsdb_head_samples_appended_total")
        stop(prom)
        since = os.path.getsize(log)
        stop(server)
        t = time.perf_counter()
        prom2, base2, _ = start_prometheus_again(db, sub, log)
        ready = time.perf_counter() - t
        total, wal = replay_time(log, since)
        stop(prom2)
        res.update(wal_samples=appended, replay_total_s=total, replay_wal_s=wal, restart_ready_s=ready)
        return res
    finally:
        stop(prom)
        stop(server)


def start_prometheus_again(db, work, log):
    """Restart on the same directory and config, appending to the same log."""
    cfg = os.path.join(work, "prometheus-replay.yml")
    prometheus_config(cfg)
    port = free_port()
    with open(log, "ab") as out:
        p = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={db}",
                              f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT, cwd=work)
    _children.append(p)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/ready", p, timeout=1800)
    return p, base, log


def sonde_rss_one(n, args, work):
    """sonde scraping the same endpoint (same seed, so the same series and value models)
    with the prometheus plugin at 1 s: whole-process RSS, the plugin's linear memory,
    CPU per 1k samples appended (sonde_head_samples_appended_total)."""
    for need in (SONDE, os.path.join(ROOT, "plugins/prometheus.wasm")):
        if not os.path.exists(need):
            return None, f"{need} is missing (scripts/build)"
    sub = os.path.join(work, f"sonde-rss-{n}")
    os.makedirs(sub)
    port = free_port()
    server = spawn([sys.executable, os.path.abspath(__file__), "_serve", "--series", str(n), "--port", str(port),
                    "--seed", str(args.seed)], log=os.path.join(sub, "serve.log"))
    wait_http(f"http://127.0.0.1:{port}/metrics", server)
    # The plugin keeps ~150-200 B per series (docs/scrape.md); generous room on top.
    limit_mib = max(128, n * 2048 // 2**20 + 64)
    with open(os.path.join(sub, "plugins.toml"), "w") as f:
        f.write(f'[bench]\nplugin = "prometheus"\ninterval = "1s"\ntimeout = "1s"\nmemory_limit = "{limit_mib}MiB"\n'
                f'[bench.grants]\nhttp = ["127.0.0.1:{port}"]\n'
                f'[bench.config]\nurl = "http://127.0.0.1:{port}/metrics"\n')
    sport = free_port()
    sonde = spawn([SONDE, "run", "--plugins", os.path.join(sub, "plugins.toml"), "--plugin-dir",
                   os.path.join(ROOT, "plugins"), "--data-dir", os.path.join(sub, "data"),
                   "--listen", f"127.0.0.1:{sport}"], log=os.path.join(sub, "sonde.log"))
    base = f"http://127.0.0.1:{sport}"
    try:
        wait_http(base + "/-/ready", sonde)
        deadline = time.time() + 120
        while time.time() < deadline:
            if (metric_sum(http(base + "/metrics"), "sonde_head_series") or 0) >= n:
                break
            time.sleep(1)
        else:
            return None, f"sonde did not reach {n} head series in 120 s (see {sub}/sonde.log)"
        time.sleep(args.warmup)
        m0 = http(base + "/metrics")
        cpu0, s0, t0 = cpu_seconds(sonde.pid), metric_sum(m0, "sonde_head_samples_appended_total"), time.time()
        seen, end = [], t0 + args.minutes * 60
        while time.time() < end:
            time.sleep(5)
            seen.append(rss_bytes(sonde.pid))
        rss_max, rss_avg = max(seen), sum(seen) / len(seen)
        m1 = http(base + "/metrics")
        cpu1, s1, t1 = cpu_seconds(sonde.pid), metric_sum(m1, "sonde_head_samples_appended_total"), time.time()
        res = {"series": n, "head_series": metric_sum(m1, "sonde_head_series"), "rss": rss_bytes(sonde.pid),
               "rss_max": rss_max, "rss_avg": rss_avg, "plugin_memory": metric_sum(m1, "sonde_plugin_memory_bytes"),
               "cpu_per_1k_ms": (cpu1 - cpu0) * 1e6 / (s1 - s0), "samples_per_s": (s1 - s0) / (t1 - t0),
               "cpu_share": (cpu1 - cpu0) / (t1 - t0)}
        return res, None
    finally:
        stop(sonde)
        stop(server)


def cmd_rss(args):
    ensure_packages()
    print_versions()
    work = tempfile.mkdtemp(prefix="sonde-rss-bench-", dir=args.tmpdir)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        results = []
        for n in sizes:
            print(f"\n== Prometheus scraping {n:,} series at 1 s: warm-up {args.warmup}s, measure {args.minutes} min ==", flush=True)
            r = rss_one(n, args, work)
            results.append(r)
            print(f"  RSS {r['rss'] / 2**20:.0f} MiB (avg {r['rss_avg'] / 2**20:.0f}, max {r['rss_max'] / 2**20:.0f}) = {r['rss'] / n:,.0f} B/series; "
                  f"CPU {r['cpu_per_1k_ms']:.2f} ms per 1k samples ({r['samples_per_s']:,.0f} samples/s, "
                  f"{r['cpu_share'] * 100:.1f}% of a core)", flush=True)
            if r["replay_total_s"]:
                print(f"  WAL replay: {r['wal_samples']:,.0f} samples in {r['replay_total_s']:.2f}s = "
                      f"{r['wal_samples'] / r['replay_total_s'] / 1e6:.2f}M samples/s "
                      f"(WAL part {r['replay_wal_s']:.2f}s; ready after {r['restart_ready_s']:.1f}s)", flush=True)
            print(f"\n== sonde (prometheus plugin) scraping {n:,} series at 1 s ==", flush=True)
            sr, why = sonde_rss_one(n, args, work)
            if why:
                print(f"  sonde: skipped: {why}")
            else:
                r["sonde"] = sr
                plug = sr["plugin_memory"] or 0
                print(f"  RSS {sr['rss'] / 2**20:.0f} MiB (avg {sr['rss_avg'] / 2**20:.0f}, max {sr['rss_max'] / 2**20:.0f}) = {sr['rss'] / n:,.0f} B/series "
                      f"(of which plugin linear memory {plug / 2**20:.0f} MiB = {plug / n:,.0f} B/series); "
                      f"CPU {sr['cpu_per_1k_ms']:.2f} ms per 1k samples ({sr['samples_per_s']:,.0f} samples/s, "
                      f"{sr['cpu_share'] * 100:.1f}% of a core); ratios sonde/Prometheus: "
                      f"RSS {sr['rss'] / r['rss']:.2f}, CPU {sr['cpu_per_1k_ms'] / r['cpu_per_1k_ms']:.2f}", flush=True)
        print("\nsummary (Prometheus):")
        print(f"  {'series':>8} {'RSS':>9} {'RSS/series':>11} {'CPU/1k samples':>15} {'WAL replay':>16}")
        for r in results:
            rep = f"{r['wal_samples'] / r['replay_total_s'] / 1e6:.2f}M/s" if r["replay_total_s"] else "–"
            print(f"  {r['series']:>8,} {r['rss'] / 2**20:>7.0f}Mi {r['rss'] / r['series']:>9,.0f} B "
                  f"{r['cpu_per_1k_ms']:>12.2f} ms {rep:>16}")
        if len(results) >= 2:
            a, b = results[0], results[-1]
            marg = (b["rss"] - a["rss"]) / (b["series"] - a["series"])
            print(f"  marginal RSS per series between {a['series']:,} and {b['series']:,}: {marg:,.0f} B")
            marg = (b["rss_avg"] - a["rss_avg"]) / (b["series"] - a["series"])
            print(f"  the same from the average RSS over the measured window: {marg:,.0f} B")
        sondes = [r["sonde"] for r in results if "sonde" in r]
        if sondes:
            print("summary (sonde, prometheus plugin):")
            print(f"  {'series':>8} {'RSS':>9} {'RSS/series':>11} {'plugin/series':>14} {'CPU/1k samples':>15}")
            for r in sondes:
                print(f"  {r['series']:>8,} {r['rss'] / 2**20:>7.0f}Mi {r['rss'] / r['series']:>9,.0f} B "
                      f"{(r['plugin_memory'] or 0) / r['series']:>12,.0f} B {r['cpu_per_1k_ms']:>12.2f} ms")
            if len(sondes) >= 2:
                a, b = sondes[0], sondes[-1]
                marg = (b["rss"] - a["rss"]) / (b["series"] - a["series"])
                print(f"  marginal RSS per series between {a['series']:,} and {b['series']:,}: {marg:,.0f} B")
                marg = (b["rss_avg"] - a["rss_avg"]) / (b["series"] - a["series"])
                print(f"  the same from the average RSS over the measured window: {marg:,.0f} B")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"versions": versions(), "results": results}, f, indent=1)
    finally:
        _stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sp = ap.add_subparsers(dest="mode", required=True)
    d = sp.add_parser("disk", help="bytes per sample and import time for the same OpenMetrics file")
    d.add_argument("--sets", default="synthetic,node", help="comma list of synthetic,node")
    d.add_argument("--series", type=int, default=10_000, help="synthetic series (default 10000)")
    d.add_argument("--duration", default="2h", help="synthetic span at 1 s (default 2h)")
    d.add_argument("--node-duration", default="24h", help="node set span at 15 s (default 24h)")
    d.add_argument("--start", type=int, help="first timestamp (default: the generator's)")
    d.add_argument("--file", help="use this OpenMetrics file instead of generating one")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--keep", action="store_true", help="keep the work dir (data dirs and logs)")
    d.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    d.add_argument("--json", help="also write the raw results here")
    d.add_argument("--tmpdir", help="parent of the work dir (default $TMPDIR or /tmp)")
    r = sp.add_parser("rss", help="Prometheus RSS per series and CPU per 1k samples while scraping")
    r.add_argument("--sizes", default="10000,100000", help="series counts (default 10000,100000)")
    r.add_argument("--minutes", type=float, default=3.0, help="measurement window per size (default 3)")
    r.add_argument("--warmup", type=float, default=30.0, help="seconds after all series exist (default 30)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--json", help="also write the raw results here")
    r.add_argument("--tmpdir", help="parent of the work dir")
    s = sp.add_parser("_serve")  # internal: the /metrics endpoint child of `rss`
    s.add_argument("--series", type=int, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    {"disk": cmd_disk, "rss": cmd_rss, "_serve": cmd_serve}[args.mode](args)


if __name__ == "__main__":
    main()
