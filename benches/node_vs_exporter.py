#!/usr/bin/env python3
"""Node plugin vs node_exporter, side by side in one run on this machine.

Measures, for the same host and the same period:
  - CPU per collection: sonde (whole daemon, node plugin every 1 s) vs
    prometheus-node-exporter (whole process, scraped every 1 s);
  - idle RSS: sonde with the node plugin at its default 15 s interval (cold start,
    which compiles the plugin, and warm start from the compile cache) vs
    node_exporter after the same number of scrapes.

Both sides are measured from /proc/<pid>/stat (utime+stime) and /proc/<pid>/status
(VmRSS), i.e. the kernel's accounting, not self-reported figures.

Usage: benches/node_vs_exporter.py [--seconds 60] [--rounds 3]
Needs: target/release/sonde, plugins/node.wasm (scripts/build), prometheus-node-exporter.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SONDE = os.environ.get("SONDE_BIN", os.path.join(ROOT, "target/release/sonde"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            get(url)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def metric(text, name, label=""):
    for line in text.splitlines():
        if line.startswith(name + label + " ") or (not label and line.startswith(name + "{")):
            return float(line.split()[-1])
    return None


def metric_sum(text, name, label_part=""):
    """Sum of the samples of `name` whose labels contain `label_part` (any labels if empty)."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label_part in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def query(base, q):
    """First value of an instant query on a Prometheus-compatible API (None if empty)."""
    r = json.loads(get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": q})))
    res = r["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def start_sonde(workdir, interval, data_dir):
    port = free_port()
    plugins = os.path.join(workdir, f"plugins-{interval}.toml")
    with open(plugins, "w") as f:
        f.write(f'[node]\nplugin = "{ROOT}/plugins/node.wasm"\ninterval = "{interval}"\n'
                '[node.grants]\nread = ["/proc", "/sys"]\nstatfs = true\n')
    p = subprocess.Popen([SONDE, "run", "--plugins", plugins, "--data-dir", data_dir,
                          "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/ready")
    return p, base


def collections(base):
    return metric(get(base + "/metrics"), "sonde_plugin_collections_total", '{plugin="node"}') or 0


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def measure_cpu(seconds, workdir):
    """One round: both run for `seconds` at a 1 s cadence; returns ms CPU per collection."""
    ne_port = free_port()
    ne = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ne_url = f"http://127.0.0.1:{ne_port}/metrics"
    wait_http(ne_url)
    sonde, base = start_sonde(workdir, "1s", os.path.join(workdir, "data-cpu"))
    try:
        time.sleep(3)  # warm-up: first collections, compile, caches
        get(ne_url)
        s_cpu0, s_n0 = cpu_seconds(sonde.pid), collections(base)
        n_cpu0, scrapes = cpu_seconds(ne.pid), 0
        end = time.time() + seconds
        while time.time() < end:
            t = time.time()
            get(ne_url)
            scrapes += 1
            time.sleep(max(0, 1 - (time.time() - t)))
        s_cpu1, s_n1 = cpu_seconds(sonde.pid), collections(base)
        n_cpu1 = cpu_seconds(ne.pid)
        samples = metric(get(base + "/metrics"), "sonde_plugin_samples", '{plugin="node"}')
        ne_samples = sum(1 for l in get(ne_url).splitlines() if l and not l.startswith("#"))
        return ((s_cpu1 - s_cpu0) * 1e3 / (s_n1 - s_n0), (n_cpu1 - n_cpu0) * 1e3 / scrapes, samples, ne_samples)
    finally:
        stop(sonde)
        stop(ne)


def measure_rss(workdir):
    data = os.path.join(workdir, "data-rss")
    shutil.rmtree(data, ignore_errors=True)
    out = {}
    for label in ("cold", "warm"):  # cold compiles the plugin; warm loads it from the cache
        sonde, base = start_sonde(workdir, "15s", data)
        time.sleep(35)  # three collections
        out[label] = rss_kb(sonde.pid)
        stop(sonde)
    ne_port = free_port()
    ne = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{ne_port}/metrics")
    for _ in range(3):
        get(f"http://127.0.0.1:{ne_port}/metrics")
    out["node_exporter"] = rss_kb(ne.pid)
    stop(ne)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for need in (SONDE, os.path.join(ROOT, "plugins/node.wasm")):
        if not os.path.exists(need):
            raise SystemExit(f"missing {need}: run scripts/build first")
    if not shutil.which("prometheus-node-exporter"):
        raise SystemExit("missing prometheus-node-exporter: apt-get install prometheus-node-exporter")
    with tempfile.TemporaryDirectory() as workdir:
        rounds = [measure_cpu(a.seconds, workdir) for _ in range(a.rounds)]
        s = statistics.median(r[0] for r in rounds)
        n = statistics.median(r[1] for r in rounds)
        print(f"CPU per collection, median of {a.rounds} rounds x {a.seconds} s at 1 s:")
        for i, r in enumerate(rounds):
            print(f"  round {i + 1}: sonde {r[0]:.2f} ms ({r[2]:.0f} samples)   node_exporter {r[1]:.2f} ms ({r[3]} samples)   ratio {r[0] / r[1]:.2f}")
        print(f"  median: sonde {s:.2f} ms, node_exporter {n:.2f} ms, ratio sonde/node_exporter {s / n:.2f}")
        rss = measure_rss(workdir)
        print("Idle RSS with the node plugin (15 s interval, after 3 collections):")
        print(f"  sonde cold start {rss['cold'] / 1024:.1f} MB, warm start {rss['warm'] / 1024:.1f} MB, "
              f"node_exporter {rss['node_exporter'] / 1024:.1f} MB, ratio warm/node_exporter {rss['warm'] / rss['node_exporter']:.2f}")


if __name__ == "__main__":
    main()
