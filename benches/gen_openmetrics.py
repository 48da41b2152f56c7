#!/usr/bin/env python3
"""Write OpenMetrics text with timestamps: the input of `promtool tsdb create-blocks-from
openmetrics` and `sonde import openmetrics`, for the storage benchmarks.

Two data sets (the storage issue's "identical data"):

  synthetic  N series (default 10k) at 1 s: the first half counters
             `bench_counter_total` with uniform random integer increments 0..100 per
             step, the second half gauges `bench_gauge`, 2-decimal random walks.
  node       a real scrape of `prometheus-node-exporter` (started on 127.0.0.1 at a
             random port and scraped once, or `--scrape FILE`), evolved over time at
             15 s: counters grow at the average rate they show since boot (or a
             per-scrape rate for the exporter's own go_/process_ counters) and keep their
             natural precision (cpu seconds 2 decimals, bytes integers); gauges stay
             constant or move slowly (memory in pages, load averages in hundredths,
             collector durations are fresh noise). Values are printed the way
             node_exporter prints them (Go's shortest %g: `1.446529e+06`).

Layout, as promtool 2.42 reads it (model/textparse/openmetricsparse.go,
cmd/promtool/backfill.go): every sample has a timestamp in seconds (integer here, or
with 3 decimals when --jitter-ms is set; promtool stores int64(ts*1000)); each family's
`# HELP`/`# TYPE` come first and its samples follow together; each series' samples are
contiguous and in ascending time (OpenMetrics' `metric = *sample`; for a summary one
MetricPoint = quantiles, _sum, _count at the same time); no other comments, no blank
lines, one space between fields, `# EOF` last. promtool itself enforces only the token
syntax, a timestamp on every sample and ascending time per series (the TSDB appender);
the family grouping is OpenMetrics' rule, kept so the files are valid OpenMetrics.

Output is deterministic for a given seed, size and --start (default: the 2 h-aligned
instant at least --duration + 2 h before now, so the data is recent enough for default
retentions and falls in whole 2 h blocks).

Usage:
  benches/gen_openmetrics.py synthetic [--series 10000] [--duration 2h] [--interval 1s] -o FILE
  benches/gen_openmetrics.py node [--duration 2h] [--interval 15s] [--scrape FILE] -o FILE
Common: [--seed 1] [--start EPOCH_SECONDS] [--jitter-ms 0]. `-o -` writes to stdout.
A summary (series, samples, start, end) goes to stderr.
"""
import argparse, decimal, itertools, math, os, random, re, socket, subprocess, sys, time, urllib.request

BLOCK = 7200  # Prometheus' default block range (2 h), in seconds


def parse_duration(s):
    """Prometheus-style duration (`90s`, `2h`, `1h30m`, `1d`) -> seconds (int)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise argparse.ArgumentTypeError(f"bad duration {s!r} (use e.g. 15s, 2h, 1h30m)")
    total = sum(int(n) * units[u] for n, u in parts)
    if total <= 0:
        raise argparse.ArgumentTypeError(f"duration {s!r} must be positive")
    return total


def default_start(duration):
    now = int(time.time())
    return (now - duration - 2 * 3600) // BLOCK * BLOCK


class Timestamps:
    """The shared time axis: strings are rendered once and reused by every series."""

    def __init__(self, start, duration, interval, jitter_ms, rng):
        n = int(duration // interval)
        if jitter_ms:
            # Scrape-like jitter: each scrape lands a few ms after its slot; per series
            # timestamps stay strictly ascending because jitter < interval.
            ms = [int(round((start + k * interval) * 1000)) + rng.randrange(jitter_ms + 1)
                  for k in range(n)]
            self.text = [f"{m // 1000}.{m % 1000:03d}" for m in ms]
            self.ms = ms
        else:
            ms = [int(round((start + k * interval) * 1000)) for k in range(n)]
            self.text = [str(m // 1000) if m % 1000 == 0 else f"{m // 1000}.{m % 1000:03d}" for m in ms]
            self.ms = ms
        self.n = n
        self.interval = interval


# ---------------------------------------------------------------------------------------
# synthetic set

def write_synthetic(out, args, ts):
    rng = random.Random(args.seed)
    n = args.series
    counters = n // 2
    inc = range(101)
    step = range(-100, 101)
    out.write("# HELP bench_counter Synthetic counter: uniform random integer increments 0..100 per step.\n"
              "# TYPE bench_counter counter\n")
    times = ts.text
    for i in range(counters):
        prefix = f'bench_counter_total{{job="bench",instance="host-{i // 100:03d}",series="{i}"}} '
        start = rng.randrange(1_000_000)
        vals = itertools.accumulate(rng.choices(inc, k=ts.n - 1), initial=start)
        out.write("".join([f"{prefix}{v} {t}\n" for v, t in zip(vals, times)]))
    out.write("# HELP bench_gauge Synthetic gauge: random walk in steps of -1.00..+1.00, 2 decimals.\n"
              "# TYPE bench_gauge gauge\n")
    for i in range(counters, n):
        prefix = f'bench_gauge{{job="bench",instance="host-{i // 100:03d}",series="{i}"}} '
        start = rng.randrange(-100_000, 100_000)  # hundredths
        vals = itertools.accumulate(rng.choices(step, k=ts.n - 1), initial=start)
        out.write("".join([f"{prefix}{v / 100:.2f} {t}\n" for v, t in zip(vals, times)]))
    return n, n * ts.n


# ---------------------------------------------------------------------------------------
# node_exporter-like set

def go_float(v):
    """Go's strconv.FormatFloat(v, 'g', -1, 64), as client_golang prints values."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    sign, digits, exp = decimal.Decimal(repr(v)).normalize().as_tuple()
    d = "".join(map(str, digits))
    x = len(d) + exp - 1  # decimal exponent of the first digit
    s = "-" if sign else ""
    if x < -4 or x >= 6:  # shortest 'g' uses %e from exponent 6 (fmt's %v would use 21)
        mant = d[0] + ("." + d[1:] if len(d) > 1 else "")
        return f"{s}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x < 0:
        return f"{s}0.{'0' * (-x - 1)}{d}"
    if len(d) <= x + 1:
        return s + d + "0" * (x + 1 - len(d))
    return f"{s}{d[:x + 1]}.{d[x + 1:]}"


def decimals_of(text):
    """Digits after the point in a value's exact decimal form (`1.4336e+06` -> 0)."""
    try:
        e = decimal.Decimal(text).normalize().as_tuple().exponent
    except decimal.InvalidOperation:
        return None
    return max(0, -e) if isinstance(e, int) else None


def scrape_node_exporter():
    """Start Debian's prometheus-node-exporter on 127.0.0.1:<random port>, scrape once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return r.read().decode()
            except OSError:
                if time.time() > deadline or p.poll() is not None:
                    raise SystemExit("prometheus-node-exporter did not answer (is the Debian package installed?)")
                time.sleep(0.1)
    finally:
        p.terminate()
        p.wait()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (\S+)$')


def parse_text(text):
    """Prometheus text format -> [(family, type, help, [(name, labels, value_text)])]."""
    fams, cur = [], None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kw, name, *rest = line.split(" ", 3)
            rest = rest[0] if rest else ""
            if cur is None or cur[0] != name:
                cur = [name, "untyped", "", []]
                fams.append(cur)
            if kw == "HELP":
                cur[2] = rest
            else:
                cur[1] = rest
            continue
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            raise SystemExit(f"cannot parse scrape line: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = cur[0] if cur else None
        if cur is None or not (name == base or name.startswith(base + "_")):
            cur = [name, "untyped", "", []]
            fams.append(cur)
        cur[3].append((name, labels, value))
    return fams


def label_value(labels, key):
    m = re.search(r'[{,]' + key + r'="((?:[^"\\]|\\.)*)"', labels)
    return m.group(1) if m else None


def without_label(labels, key):
    out = re.sub(r'(^\{|,)' + key + r'="(?:[^"\\]|\\.)*"', r"\1", labels)
    out = out.replace("{,", "{").replace(",}", "}")
    return "" if out == "{}" else out


def scalar(fams, name):
    for f in fams:
        for n, _, v in f[3]:
            if n == name:
                return float(v)
    return None


CONSTANT_GAUGE = re.compile(r"(_info|_total_bytes|Total_bytes|Total|_size_bytes|Hugepagesize_bytes|"
                            r"_boot_time_seconds|_start_time_seconds|_max_fds|_max_bytes|_mtu_bytes|"
                            r"_speed_bytes|DirectMap\w+|_files|_limit\w*|_up|_readonly|_device_error|"
                            r"_flags|_id|_type|_group|_link|_mode|_carrier)$")


class Evolver:
    """Per-series value model. `next()` returns the text of the value at the next step."""

    def __init__(self, rng, step):
        self.rng, self.step = rng, step

    def counter(self, name, value, p, rate):
        """Counter kept in integer units of 10^-p; fractional progress carries over, so a
        slow counter (errors at 0.01/s) ticks by 1 now and then instead of never."""
        rng, scale = self.rng, 10 ** p
        units = round(float(value) * scale)
        per_step = rate * self.step * scale
        carry = rng.random()

        def nxt():
            nonlocal units, carry
            carry += per_step * rng.uniform(0.5, 1.5)
            whole = int(carry)
            carry -= whole
            units += whole
            return go_float(units / scale) if p else go_float(float(units))
        return nxt

    def float_counter(self, value, rate):
        """Counter with full float precision (e.g. go_gc_duration_seconds_sum)."""
        rng, v = self.rng, float(value)

        def nxt():
            nonlocal v
            v += rate * self.step * rng.uniform(0.2, 1.8)
            return go_float(v)
        return nxt

    def walk(self, value, quantum, rel_sigma, lo=0.0, hi=math.inf, revert=0.05):
        """Mean-reverting random walk in multiples of `quantum` (pages, hundredths)."""
        rng, v0 = self.rng, float(value)
        q = quantum
        units, mean = round(v0 / q), v0 / q
        sigma = max(rel_sigma * abs(mean), 0.0)

        def nxt():
            nonlocal units
            units += round(rng.gauss(revert * (mean - units), sigma))
            units = min(max(units, math.ceil(lo / q)), hi / q)
            return go_float(round(units * q, 10) if q < 1 else float(units * q))
        return nxt

    def noise(self, value, spread=0.3):
        """Fresh value every step around the scraped one (collector durations)."""
        rng, v0 = self.rng, float(value) or 1e-4

        def nxt():
            return go_float(v0 * rng.lognormvariate(0, spread))
        return nxt

    def clock(self, value, start):
        """node_time_seconds: the scrape's wall clock with sub-second float noise."""
        rng, k = self.rng, 0

        def nxt():
            nonlocal k
            v = start + k * self.step + rng.uniform(0, 0.01)
            k += 1
            return go_float(v)
        return nxt

    def quantiles(self, qs):
        """Models for a summary's quantile rows that stay ordered: each step draws a
        handful of GC-pause-like durations and reports their quantiles; the first row's
        call draws, the others read the same draw (rows are written in order)."""
        rng, cur = self.rng, []

        def model(i):
            def nxt():
                if i == 0:
                    pauses = sorted(rng.lognormvariate(math.log(4e-5), 0.5) for _ in range(8))
                    cur[:] = [pauses[min(int(q * len(pauses)), len(pauses) - 1)] for q in qs]
                return go_float(cur[i])
            return nxt
        return [model(i) for i in range(len(qs))]

    def constant(self, value):
        text = go_float(float(value))
        return lambda: text


def node_model(ev, fam_type, name, labels, value, ctx):
    """Choose how one scraped series evolves. ctx: uptime, exporter age, start, step."""
    v = float(value)
    p = decimals_of(value)
    step = ev.step
    if math.isnan(v) or math.isinf(v):
        return ev.constant(v)
    if fam_type == "summary":
        if name.endswith("_count"):
            return ev.counter(name, v, 0, 1.0 / step)  # about one GC per scrape interval
        if name.endswith("_sum"):
            return ev.float_counter(v, 5e-5 / step)
        return None  # quantiles: modelled per metric in write_node
    counter_like = fam_type == "counter" or (
        fam_type == "untyped" and re.match(r"node_(vmstat|netstat)_", name)
        and not re.search(r"CurrEstab|Forwarding", name))
    if counter_like:
        if name.startswith(("go_", "process_", "promhttp_")):
            per_scrape = {"process_cpu_seconds_total": 0.02, "go_memstats_alloc_bytes_total": 1.5e6,
                          "go_memstats_mallocs_total": 1.5e4, "go_memstats_frees_total": 1.45e4,
                          "promhttp_metric_handler_requests_total": 1.0 if label_value(labels, "code") == "200" else 0.0}
            rate = per_scrape.get(name, 0.0) / step
        else:
            rate = v / ctx["uptime"] if ctx["uptime"] > 0 else 0.0
        if p is None or p > 6:
            return ev.float_counter(v, rate)
        return ev.counter(name, v, p, rate)
    # gauges (and the remaining untyped)
    if name == "node_time_seconds":
        return ev.clock(v, ctx["start"])
    if name == "node_scrape_collector_duration_seconds":
        return ev.noise(v)
    if name.startswith("node_load"):
        return ev.walk(v, 0.01, {"node_load1": 0.05, "node_load5": 0.02}.get(name, 0.01) / max(v, 0.1), revert=0.1)
    if CONSTANT_GAUGE.search(name) or v == 0:
        return ev.constant(v)
    if name.startswith("node_memory_") and name.endswith("_bytes"):
        return ev.walk(v, 4096, 0.0002)
    if name in ("node_filesystem_avail_bytes", "node_filesystem_free_bytes"):
        return ev.walk(v, 4096, 1e-6, revert=0.01)
    if name == "node_filesystem_files_free":
        return ev.walk(v, 1, 1e-6, revert=0.01)
    if name in ("node_procs_running", "node_procs_blocked"):
        return ev.walk(v, 1, 0.5, lo=0, revert=0.5)
    if name.startswith(("node_sockstat_", "node_netstat_", "node_filefd_", "node_nf_conntrack_")):
        return ev.walk(v, 4096 if name.endswith("_bytes") else 1, 0.05, lo=0, revert=0.2)
    if name in ("go_goroutines", "go_threads", "process_open_fds"):
        return ev.walk(v, 1, 0.03, lo=1, revert=0.3)
    if name.startswith("go_memstats_") and name.endswith("_bytes"):
        return ev.walk(v, 8, 0.05, revert=0.2)
    if name in ("process_resident_memory_bytes", "process_virtual_memory_bytes"):
        return ev.walk(v, 4096, 0.002, revert=0.2)
    if name.startswith("node_timex_offset"):
        return ev.noise(v or 1e-5)
    return ev.constant(v)


def om_family(name, typ, help_text):
    """OpenMetrics header of a text-format family (counter families drop `_total`)."""
    om_type = {"untyped": "unknown"}.get(typ, typ)
    fam = name
    if typ == "counter":
        if name.endswith("_total"):
            fam = name[:-len("_total")]
        else:
            om_type = "unknown"  # an OpenMetrics counter sample must end in _total
    head = f"# HELP {fam} {help_text}\n" if help_text else ""
    return head + f"# TYPE {fam} {om_type}\n"


def write_node(out, args, ts):
    text = open(args.scrape).read() if args.scrape else scrape_node_exporter()
    fams = parse_text(text)
    rng = random.Random(args.seed)
    ev = Evolver(rng, ts.interval)
    now = scalar(fams, "node_time_seconds") or time.time()
    boot = scalar(fams, "node_boot_time_seconds") or now - 86400
    ctx = {"uptime": max(now - boot, 1.0), "start": ts.ms[0] / 1000}
    series = samples = 0
    times = ts.text
    for name, typ, help_text, rows in fams:
        if not rows:
            continue
        out.write(om_family(name, typ, help_text))
        # A metric (one label set; for a summary, the label set without `quantile`)
        # keeps its rows in scrape order; each time step writes all of them.
        groups = {}
        for row in rows:
            key = without_label(row[1], "quantile") if typ in ("summary", "histogram") else row[1]
            groups.setdefault(key, []).append(row)
        for rows_of_metric in groups.values():
            models = [(n + l + " ", node_model(ev, typ, n, l, v, ctx)) for n, l, v in rows_of_metric]
            qrows = [i for i, (_, m) in enumerate(models) if m is None]
            if qrows:
                qs = [float(label_value(rows_of_metric[i][1], "quantile")) for i in qrows]
                for i, m in zip(qrows, ev.quantiles(qs)):
                    models[i] = (models[i][0], m)
            buf = []
            for t in times:
                for prefix, nxt in models:
                    buf.append(f"{prefix}{nxt()} {t}\n")
            out.write("".join(buf))
            series += len(models)
            samples += len(models) * ts.n
    return series, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", choices=["synthetic", "node"])
    ap.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    ap.add_argument("--series", type=int, default=10_000, help="synthetic: number of series (default 10000)")
    ap.add_argument("--duration", type=parse_duration, default=2 * 3600, help="time span (default 2h)")
    ap.add_argument("--interval", type=parse_duration, default=None,
                    help="step between samples (default 1s synthetic, 15s node)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=None,
                    help="first timestamp, Unix seconds (default: 2h-aligned, duration + 2h ago)")
    ap.add_argument("--jitter-ms", type=int, default=0, help="random 0..N ms added to each timestamp")
    ap.add_argument("--scrape", help="node: a saved node_exporter scrape instead of a live one")
    args = ap.parse_args()
    interval = args.interval or (1 if args.set == "synthetic" else 15)
    if args.jitter_ms >= interval * 1000:
        ap.error("--jitter-ms must be smaller than the interval")
    if args.set == "synthetic" and args.series < 2:
        ap.error("--series must be at least 2")
    start = args.start if args.start is not None else default_start(args.duration)
    ts = Timestamps(start, args.duration, interval, args.jitter_ms, random.Random(args.seed ^ 0x5EED))
    if ts.n < 1:
        ap.error("--duration must be at least one --interval")
    out = sys.stdout if args.output == "-" else open(args.output, "w", buffering=1 << 20)
    t0 = time.time()
    write = write_synthetic if args.set == "synthetic" else write_node
    series, samples = write(out, args, ts)
    out.write("# EOF\n")
    if out is not sys.stdout:
        out.close()
    print(f"{args.set}: {series} series x {ts.n} steps of {interval}s = {samples} samples, "
          f"start {start} end {ts.ms[-1] / 1000:.3f} ({time.time() - t0:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
