#!/usr/bin/env python3
"""Rule evaluation: 1,000 rules over node metrics, sonde vs Prometheus 2.42, same run.

node_exporter is scraped by Prometheus every 5 s; sonde collects the same metrics with
its node plugin every 5 s. Both evaluate the same rule file (10 groups x 100 rules:
recording and alerting rules of the kinds people write over node metrics) every 15 s.
After a warm-up, the time each group's last evaluation took is read from both
(`sonde_rule_group_last_duration_seconds` and `prometheus_rule_group_last_duration_seconds`)
every 5 s; the figure is the median over the window of the sum over groups, i.e. the
time to evaluate all 1,000 rules once. Both report their own timing around the same
work (query + writing results), so the ratio is meaningful; CPU of each whole process
over the window is printed too (it includes collection/scraping).

Usage: benches/rules_vs_prometheus.py [--seconds 120]
Needs: target/release/sonde, plugins/node.wasm (scripts/build), prometheus,
prometheus-node-exporter (scripts/test installs them).
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The process and HTTP helpers the other benches share (db_plugins_vs_exporters.py too).
from node_vs_exporter import ROOT, SONDE, cpu_seconds, free_port, get, stop, wait_http  # noqa: E402

KINDS = [
    ("record", 'sum by (instance) (rate(node_cpu_seconds_total{{mode!="idle"}}[5m])) * {i}'),
    ("record", "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) + {i}"),
    ("record", 'predict_linear(node_filesystem_avail_bytes{{fstype!="tmpfs"}}[1h], {i} * 60)'),
    ("record", "sum by (device) (rate(node_network_receive_bytes_total[5m])) > {i}"),
    ("alert", "node_load1 > {i}"),
    ("alert", 'avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[5m])) < 1 / {i}'),
    ("record", "histogram_quantile(0.9, sum by (le) (rate(node_cpu_seconds_total[5m]))) + {i}"),
    ("alert", "node_filesystem_avail_bytes / node_filesystem_size_bytes < {i} / 1000"),
    ("record", "count by (mode) (node_cpu_seconds_total) * {i}"),
    ("record", "max_over_time(node_load1[10m]) + {i}"),
]


def rules_yaml(groups=10, per_group=100):
    out = ["groups:"]
    n = 0
    for g in range(groups):
        out.append(f"  - name: bench{g}\n    rules:")
        for r in range(per_group):
            kind, expr = KINDS[n % len(KINDS)]
            expr = expr.format(i=n + 1)
            if kind == "record":
                out.append(f"      - record: bench:r{n}\n        expr: '{expr}'")
            else:
                out.append(f"      - alert: Bench{n}\n        expr: '{expr}'\n        for: 5m\n"
                           f"        labels:\n          severity: warning\n"
                           f"        annotations:\n          summary: '{{{{ $labels.instance }}}} at {{{{ $value | humanize }}}}'")
            n += 1
    return "\n".join(out) + "\n"


def group_sum(text, name):
    total, n = 0.0, 0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            total += float(line.split()[-1])
            n += 1
    return total, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=120)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sonde-bench-rules-")
    rules = os.path.join(work, "rules.yml")
    with open(rules, "w") as f:
        f.write(rules_yaml())
    check = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(check.stderr)
    procs = []
    try:
        ne_port = free_port()
        procs.append(subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{ne_port}/metrics")
        prom_port = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: 5s\n  evaluation_interval: 15s\nrule_files: ['{rules}']\n"
                    f"scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n")
        prom = subprocess.Popen(["prometheus", f"--config.file={work}/prometheus.yml",
                                 f"--storage.tsdb.path={work}/prom-data", f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        s_port = free_port()
        with open(os.path.join(work, "sonde.toml"), "w") as f:
            f.write(f"[rules]\nfiles = ['{rules}']\nevaluation_interval = '15s'\n")
        with open(os.path.join(work, "plugins.toml"), "w") as f:
            f.write(f'[node]\nplugin = "{ROOT}/plugins/node.wasm"\ninterval = "5s"\n'
                    '[node.grants]\nread = ["/proc", "/sys"]\nstatfs = true\n')
        sonde = subprocess.Popen([SONDE, "run", "--config", f"{work}/sonde.toml", "--plugins", f"{work}/plugins.toml",
                                  "--data-dir", f"{work}/sonde-data", "--listen", f"127.0.0.1:{s_port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        procs.append(sonde)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=120)
        wait_http(f"http://127.0.0.1:{s_port}/-/ready", timeout=120)
        print(f"1,000 rules (10 groups x 100) every 15 s; warm-up 60 s, then {a.seconds} s", flush=True)
        time.sleep(60)
        c0 = (cpu_seconds(sonde.pid), cpu_seconds(prom.pid))
        s_vals, p_vals = [], []
        end = time.time() + a.seconds
        while time.time() < end:
            s, sn = group_sum(get(f"http://127.0.0.1:{s_port}/metrics"), "sonde_rule_group_last_duration_seconds")
            p, pn = group_sum(get(f"http://127.0.0.1:{prom_port}/metrics"), "prometheus_rule_group_last_duration_seconds")
            if sn == 10 and pn == 10 and s > 0 and p > 0:
                s_vals.append(s)
                p_vals.append(p)
            time.sleep(5)
        c1 = (cpu_seconds(sonde.pid), cpu_seconds(prom.pid))
        fails = group_sum(get(f"http://127.0.0.1:{s_port}/metrics"), "sonde_rule_evaluation_failures_total")[0]
        s_med, p_med = statistics.median(s_vals), statistics.median(p_vals)
        print(f"{'':28}{'sonde':>12}{'Prometheus':>12}{'ratio':>8}")
        print(f"{'eval 1,000 rules (ms)':28}{s_med * 1e3:12.1f}{p_med * 1e3:12.1f}{s_med / p_med:8.2f}")
        cs, cp = c1[0] - c0[0], c1[1] - c0[1]
        print(f"{'process CPU in window (s)':28}{cs:12.2f}{cp:12.2f}{cs / cp:8.2f}")
        print(f"sonde rule evaluation failures: {fails:.0f}")
    finally:
        for p in reversed(procs):
            stop(p)


if __name__ == "__main__":
    main()
