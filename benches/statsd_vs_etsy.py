#!/usr/bin/env python3
"""StatsD ingest: sonde's statsd plugin vs the original Etsy StatsD daemon, in one run.

Both daemons listen on 127.0.0.1 (UDP, random ports) and are started once; each load
step is sent to one daemon at a time, alternating which goes first, so the two see the
same machine noise without competing for its two cores. The load comes from
benches/statsd_load.c (compiled here with `cc -O2`): precomputed StatsD lines of 1,000
names (counters, some with a sample rate, gauges, timers) sent with sendmmsg(2) at a
paced rate, either one line per datagram or N lines per datagram (`\\n`-joined, as a
client that buffers does). It reports the lines it actually sent.

Two measurements per scenario (one line per datagram; --per lines per datagram):
  - highest rate with < 0.1 % loss: offered rates step up (--rates-1, --rates-n), each
    for --step-seconds (a step that misses the goal is tried once more, --tries: the
    machine is shared); loss = 1 - lines the daemon counted / lines sent. The daemon's
    own count is the truth: Etsy's `statsd.metrics_received` (summed over its flushes
    by a 10-line backend this script writes, read through the admin port's `stats`
    command); sonde's `statsd_exporter_lines_total` from /api/v1/query, read after a
    collection that follows the step (and once the host's receiver counters on
    /metrics, if any, stopped moving).
  - CPU per line at a rate both sustain (--cpu-rate, default 100k lines/s), --rounds
    rounds of --cpu-seconds: utime+stime of the daemon's process (/proc/<pid>/stat)
    from the start of the step to 1 s after it, divided by the lines it counted. (The
    per-step "% of a core" is that CPU over the sending seconds: the drain is in it.)

sonde runs the statsd plugin at its default 15 s interval (the host reads the socket in
batches and feeds the plugin's `ingest`; `collect` exposes the aggregate). Etsy statsd
0.9.0 runs with no backend but the counting one (nothing is forwarded), flushInterval
10 s (its default), and its socket as it ships it (the kernel's default receive
buffer, net.core.rmem_default, 208 KiB here). sonde's receiver asks for 32 MiB
(SO_RCVBUFFORCE as root). --etsy-rcvbuf adds a second Etsy statsd to the same run
whose UDP server (a module for its `servers` setting) asks for a larger buffer, to
separate the daemon's speed from its buffer.

On this VM one sender thread tops out at ~300-400k one-line datagrams/s (the kernel's
per-datagram cost: loopback delivery and waking the reader run in the sender's
syscall), so the one-line ladder ends where the sender does; the multi-line scenario
pushes lines past 1M/s. Steps where the sender fell short of the offered rate are
marked; the achieved rate is what is reported.

Usage: benches/statsd_vs_etsy.py [--step-seconds 5] [--rounds 3] [--daemons etsy,sonde]
                                 [--etsy-rcvbuf 4194304]
Needs: target/release/sonde and plugins/statsd.wasm (scripts/build), node (20), cc;
installs the npm package statsd@0.9.0 into target/bench-node/ when missing.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_exporter import ROOT, SONDE, cpu_seconds, free_port, get, metric_sum, query, rss_kb, stop  # noqa: E402
from db_plugins_vs_exporters import start_sonde  # noqa: E402

NODE_DIR = os.path.join(ROOT, "target/bench-node")
ETSY = os.path.join(NODE_DIR, "node_modules/statsd/stats.js")
ETSY_VERSION = "0.9.0"
LOAD_SRC = os.path.join(ROOT, "benches/statsd_load.c")
LOAD = os.path.join(ROOT, "target/bench-statsd/statsd_load")
PLUGIN = os.path.join(ROOT, "plugins/statsd.wasm")
LOSS_GOAL = 0.001
SONDE_INTERVAL = 15

# Etsy statsd resets statsd.metrics_received at every flush; this backend adds it up
# before the reset (backends' flush listeners run before the daemon's clear) and keeps
# a reference to the live counters, so `stats` on the admin port gives lines counted so
# far. It does no work per packet.
COUNT_BACKEND = """\
let total = 0, flushes = 0, live = null;
exports.init = function (startup, config, events) {
  events.on('flush', function (ts, m) {
    total += m.counters['statsd.metrics_received'] || 0; flushes++; live = m.counters;
  });
  events.on('status', function (write) {
    write(null, 'count', 'lines', total + (live ? live['statsd.metrics_received'] : 0));
    write(null, 'count', 'flushes', flushes);
  });
  return true;
};
"""

# Etsy's servers/udp.js with a receive buffer size (node's dgram `recvBufferSize`).
UDP_RCVBUF_SERVER = """\
const dgram = require('dgram');
exports.start = function (config, callback) {
  const server = dgram.createSocket({type: 'udp4', recvBufferSize: config.rcvbuf}, callback);
  server.bind(config.port, config.address);
  this.server = server;
  return true;
};
"""


def build_load():
    if not os.path.exists(LOAD) or os.path.getmtime(LOAD) < os.path.getmtime(LOAD_SRC):
        os.makedirs(os.path.dirname(LOAD), exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", LOAD, LOAD_SRC], check=True)


def ensure_etsy():
    if not os.path.exists(ETSY):
        os.makedirs(NODE_DIR, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund",
                        f"statsd@{ETSY_VERSION}"], check=True)


def send(port, rate, seconds, per):
    out = subprocess.run([LOAD, "127.0.0.1", str(port), str(int(rate)), str(seconds), str(per)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


class Etsy:
    def __init__(self, workdir, rcvbuf=0):
        """rcvbuf > 0: Etsy's UDP server with SO_RCVBUF set to that (a server module of
        its `servers` setting; the kernel caps it at net.core.rmem_max)."""
        self.name = "Etsy statsd" + (f" ({rcvbuf / 2**20:g} MiB rcvbuf)" if rcvbuf else "")
        tag = f"etsy-{rcvbuf}"
        self.port, self.admin = free_port(), free_port()
        backend = os.path.join(workdir, "count_backend.js")
        with open(backend, "w") as f:
            f.write(COUNT_BACKEND)
        conf = {"address": "127.0.0.1", "port": self.port, "mgmt_address": "127.0.0.1",
                "mgmt_port": self.admin, "backends": [backend], "flushInterval": 10000}
        if rcvbuf:
            server = os.path.join(workdir, "udp_rcvbuf.js")
            with open(server, "w") as f:
                f.write(UDP_RCVBUF_SERVER)
            conf["servers"] = [{"server": server, "address": "127.0.0.1", "port": self.port, "rcvbuf": rcvbuf}]
        with open(os.path.join(workdir, f"{tag}.js"), "w") as f:
            f.write(json.dumps(conf))
        self.proc = subprocess.Popen(["node", ETSY, f"{tag}.js"], cwd=workdir, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(workdir, f"{tag}.log"), "w"))
        # The count is readable once the first flush has handed the backend the counters.
        wait_until(lambda: self.stats().get("count.flushes", 0) >= 1, 30, "Etsy statsd's first flush")

    def stats(self):
        try:
            with socket.create_connection(("127.0.0.1", self.admin), timeout=5) as s:
                s.sendall(b"stats\n")
                buf = b""
                while not buf.endswith(b"END\n\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError:
            return {}
        out = {}
        for line in buf.decode().splitlines():
            k, _, v = line.partition(": ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def lines(self):
        return self.stats()["count.lines"]

    def settle(self):
        """Lines counted once the socket buffer is drained (the count stops moving)."""
        last = self.lines()
        while True:
            time.sleep(0.5)
            n = self.lines()
            if n == last:
                return n
            last = n


class Sonde:
    name = "sonde"

    def __init__(self, workdir):
        self.port = free_port()
        plugins = (f'[statsd]\nplugin = "statsd"\ninterval = "{SONDE_INTERVAL}s"\n'
                   f'[statsd.grants]\nlisten_udp = ["127.0.0.1:{self.port}"]\n')
        self.proc, self.base = start_sonde(workdir, "statsd", "", plugins)

    def self_metrics(self):
        return get(self.base + "/metrics")

    def collections(self):
        return metric_sum(self.self_metrics(), "sonde_plugin_collections_total", 'plugin="statsd"')

    def receiver(self):
        """The host receiver's own counters (names not fixed yet: every sonde_receiver_* sample)."""
        out = {}
        for line in self.self_metrics().splitlines():
            if line.startswith("sonde_receiver_"):
                key, _, v = line.rpartition(" ")
                out[key] = float(v)
        return out

    def lines(self):
        return query(self.base, "sum(statsd_exporter_lines_total)") or 0.0

    def settle(self):
        """Lines counted by the plugin as of a collection after the receiver went quiet."""
        last = self.receiver()
        while True:
            time.sleep(0.5)
            now = self.receiver()
            if now == last:
                break
            last = now
        c0 = self.collections()
        wait_until(lambda: self.collections() > c0, 3 * SONDE_INTERVAL, "a sonde collection")
        time.sleep(0.2)
        return self.lines()


def step(d, rate, seconds, per):
    """One load step against daemon d: lines sent, lines counted, CPU seconds."""
    n0 = d.lines()
    cpu0 = cpu_seconds(d.proc.pid)
    sent = send(d.port, rate, seconds, per)
    time.sleep(1)  # drain: what is still in the socket buffer is processed now
    cpu1 = cpu_seconds(d.proc.pid)
    n1 = d.settle()
    counted = n1 - n0
    return {"offered": rate, "achieved": sent["achieved_rate"], "sent": sent["lines_sent"], "counted": counted,
            "loss": 1 - counted / sent["lines_sent"], "cpu": cpu1 - cpu0, "seconds": sent["seconds"],
            "short": sent["achieved_rate"] < 0.97 * rate}


def fmt_rate(r):
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def ladder(daemons, rates, seconds, per, tries, log):
    """Steps up the offered rate. A step over the loss goal is tried again (up to `tries`
    times: the machine is shared, and a neighbour's burst should not end a ladder); a
    daemon leaves the ladder after a step whose every try lost ≥ 10 %."""
    results = {d.name: [] for d in daemons}
    out = {d.name: False for d in daemons}
    for i, rate in enumerate(rates):
        order = daemons if i % 2 == 0 else daemons[::-1]
        for d in order:
            if out[d.name]:
                continue
            for t in range(tries):
                r = step(d, rate, seconds, per)
                results[d.name].append(r)
                log(f"    {d.name:26} offered {fmt_rate(rate):>6}/s sent {fmt_rate(r['achieved']):>6}/s"
                    f"{' (sender short)' if r['short'] else '':15} counted {r['counted']:>11,.0f} / {r['sent']:>11,}"
                    f"  loss {r['loss'] * 100:7.3f} %  CPU {r['cpu'] / r['seconds'] * 100:5.1f} % of a core"
                    f" = {r['cpu'] * 1e6 / r['counted'] if r['counted'] else 0:.2f} µs/line"
                    f"{f'  (try {t + 1})' if t else ''}")
                if r["loss"] < LOSS_GOAL:
                    break
            out[d.name] = r["loss"] >= 0.10
    return results


def best(steps):
    ok = [s["achieved"] for s in steps if s["loss"] < LOSS_GOAL]
    return max(ok) if ok else 0.0


def cpu_rounds(daemons, rate, seconds, per, rounds, log):
    per_line = {d.name: [] for d in daemons}
    for i in range(rounds):
        for d in (daemons if i % 2 == 0 else daemons[::-1]):
            r = step(d, rate, seconds, per)
            us = r["cpu"] * 1e6 / r["counted"] if r["counted"] else float("inf")
            per_line[d.name].append(us)
            log(f"    round {i + 1}: {d.name:26} {us:6.2f} µs/line  ({r['counted']:,.0f} of {r['sent']:,} lines, "
                f"loss {r['loss'] * 100:.3f} %)")
    return {k: statistics.median(v) for k, v in per_line.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--step-seconds", type=float, default=5)
    ap.add_argument("--rates-1", default="25000,50000,100000,200000,250000,300000,350000,10000000",
                    help="offered lines/s, one line per datagram (10M = as fast as the sender can)")
    ap.add_argument("--rates-n", default="100000,250000,500000,750000,1000000,1200000,1500000,2000000,3000000,"
                                           "4000000,10000000",
                    help="offered lines/s, --per lines per datagram (10M = flat out)")
    ap.add_argument("--per", type=int, default=20, help="lines per datagram in the second scenario")
    ap.add_argument("--cpu-rate", type=float, default=100_000,
                    help="lines/s for the CPU figure (Etsy statsd already loses lines at 200k/s here)")
    ap.add_argument("--cpu-seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tries", type=int, default=2, help="tries of a ladder step that missed the loss goal")
    ap.add_argument("--daemons", default="etsy,sonde")
    ap.add_argument("--etsy-rcvbuf", type=int, default=0,
                    help="also run a second Etsy statsd whose UDP socket asks for this SO_RCVBUF (bytes)")
    a = ap.parse_args()
    which = a.daemons.split(",")
    if "sonde" in which:
        for need in (SONDE, PLUGIN):
            if not os.path.exists(need):
                raise SystemExit(f"missing {need}: run scripts/build first (or --daemons etsy)")
    for tool in ("node", "cc"):
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}")
    ensure_etsy()
    build_load()

    def log(s):
        print(s, flush=True)

    with tempfile.TemporaryDirectory(prefix="sonde-bench-statsd-") as workdir:
        daemons = []
        try:
            if "etsy" in which:
                daemons.append(Etsy(workdir))
            if a.etsy_rcvbuf:
                daemons.append(Etsy(workdir, a.etsy_rcvbuf))
            if "sonde" in which:
                daemons.append(Sonde(workdir))
            for d in daemons:  # warm-up: JIT, plugin compile, first series
                step(d, 100_000, 3, 1)
            summary = []
            for per, rates in ((1, a.rates_1), (a.per, a.rates_n)):
                rates = [float(r) for r in rates.split(",")]
                log(f"\n== {per} line(s) per datagram: highest rate with < {LOSS_GOAL * 100:g} % loss "
                    f"({a.step_seconds:g} s steps) ==")
                lad = ladder(daemons, rates, a.step_seconds, per, a.tries, log)
                log(f"== {per} line(s) per datagram: CPU per line at {fmt_rate(a.cpu_rate)} lines/s "
                    f"({a.rounds} rounds x {a.cpu_seconds:g} s) ==")
                cpu = cpu_rounds(daemons, a.cpu_rate, a.cpu_seconds, per, a.rounds, log)
                summary.append((per, {d.name: best(lad[d.name]) for d in daemons}, cpu))
            rss = {d.name: rss_kb(d.proc.pid) / 1024 for d in daemons}
        finally:
            for d in daemons:
                stop(d.proc)

    names = [d.name for d in daemons]
    log("\nsummary:")
    for per, top, cpu in summary:
        line = f"  {per:>2} line(s)/datagram: highest rate < 0.1 % loss " + ", ".join(
            f"{n} {fmt_rate(top[n])}/s" for n in names)
        line += ";  CPU per line " + ", ".join(f"{n} {cpu[n]:.2f} µs" for n in names)
        log(line)
        for n in names:
            if "sonde" in names and n.startswith("Etsy"):
                s, e = top["sonde"], top[n]
                log(f"      sonde ÷ {n}: rate {s / e if e else float('inf'):.2f}, CPU per line {cpu['sonde'] / cpu[n]:.2f}")
    log("  RSS at the end: " + ", ".join(f"{n} {rss[n]:.1f} MB" for n in names))


if __name__ == "__main__":
    main()
