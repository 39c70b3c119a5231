#!/usr/bin/python3
"""Summarises one bench/run.sh results directory.

usage: report.py RESULTS_DIR [--markdown FILE] [--plot FILE.png|FILE.svg]

Reads RESULTS_DIR/<target>-r<round>-<workload>.json (lskv-bench --json),
<target>-r<round>-rss.json and env.json; writes RESULTS_DIR/summary.md (and
a copy to --markdown), and plots the latency distributions with gnuplot into
RESULTS_DIR/latency.png (and a copy to --plot). Medians over rounds; ratios
are lskv / etcd. Exit status 0, or 1 when the directory holds no results.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

PROG = "bench/report.py"

DESCRIPTIONS = {
    "put-1x1": "Put, 256 B values, random keys, one connection, one stream",
    "put-16x16": "Put, 256 B values, random keys",
    "range-s-16x16": "Range of one random key, serializable, on a fully loaded key space",
    "range-l-16x16": "Range of one random key, linearizable",
    "txn-put-16x16": "Txn with one Put and no compares, random keys",
    "fresh-range-s-16x16": "Range of the only key of a fresh server, serializable (control for hot-range-s)",
    "hot-put-16x16": "Put to one hot key, on a fresh server (no compaction)",
    "hot-range-s-16x16": "Range of that hot key after all its updates, serializable",
    "big-range-s-16x16": "Range of one random key, serializable, on a store of a million keys "
                         "(the restart after it is the 'big' row below)",
    "mem-range-s-16x16": "Range of one random key, serializable, on the big key space (a million "
                         "keys; 100k with BENCH_QUICK) of 16 B keys with 16 B values, lskv "
                         "without value cache (the trusted-memory table below)",
    "txn-noop-a-16x16": "Txn whose compare fails, a 2 KB Put in the branch not taken: a write "
                        "that changes nothing (the restart after it is the 'noopa' row below)",
    "txn-noop-b-16x16": "The same, ten times as many (the 'noopb' restart row)",
    "watch-latency-1": "Watch latency, one watcher of one key: Puts of that key at a fixed "
                       "rate, one at a time; latency from each Put's send to the watcher's "
                       "event; throughput is events/s (set by the Put rate: ~1 by design)",
    "watch-latency-1000": "The same with 1000 watchers of the key (10 per Watch stream); "
                          "latency from each Put's send to each watcher's event",
    "lease-keepalive-16x16": "LeaseKeepAlive: 1000 leases granted first, then keep-alives "
                             "over one LeaseKeepAlive stream per client, one in flight each",
    "put-16x16-3m": "Put, 256 B values, random keys, on a 3-member cluster (connections "
                    "round-robin over the members: followers forward to the leader)",
    "range-l-16x16-3m": "Range of one random key, linearizable, on that 3-member cluster "
                        "(key space preloaded; followers ask the leader for a read index)",
}
# The 3-member rows and the single-server rows they repeat: the report gives
# what the cluster costs each server (throughput 3-member / single).
CLUSTER_ROWS = {"put-16x16-3m": "put-16x16", "range-l-16x16-3m": "range-l-16x16"}
STATES = {
    "main": "the workloads above",
    "big": "1M keys loaded",
    "noopa": "no-op Txns",
    "noopb": "no-op Txns",
}
ORDER = list(DESCRIPTIONS)
FILE_RE = re.compile(r"^(?P<target>[a-z0-9]+)-r(?P<round>\d+)-(?P<name>[a-z0-9-]+)\.json$")


def die(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(1)


def load(results):
    runs = {}  # (name, target) -> [doc, ...]
    rss = {}  # target -> [doc, ...]
    mem = {}  # target -> [doc, ...]
    restarts = {}  # (state, target) -> [doc, ...]
    for fn in sorted(os.listdir(results)):
        m = FILE_RE.match(fn)
        if not m:
            continue
        path = os.path.join(results, fn)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{PROG}: {path}: {e}", file=sys.stderr)
            continue
        doc["_round"] = int(m["round"])
        if m["name"] == "rss":
            rss.setdefault(m["target"], []).append(doc)
        elif m["name"] == "mem":
            mem.setdefault(m["target"], []).append(doc)
        elif m["name"].startswith("restart-"):
            restarts.setdefault((doc["state"], m["target"]), []).append(doc)
        else:
            runs.setdefault((m["name"], m["target"]), []).append(doc)
    return runs, rss, mem, restarts


def median(values):
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"**{a / b:.2f}**"


def spread(values):
    """Half the min-max range as a percentage of the median: how noisy rounds were."""
    if len(values) < 2:
        return ""
    m = statistics.median(values)
    if m == 0:
        return ""
    return f" ±{50 * (max(values) - min(values)) / m:.0f}%"


def summarise(runs, name, target):
    docs = runs.get((name, target), [])
    if not docs:
        return None
    tput = [d["throughput_rps"] for d in docs]
    return {
        "n": len(docs),
        "tput": median(tput),
        "tput_spread": spread(tput),
        "p50": median([d["latency_ms"]["p50"] for d in docs]),
        "p99": median([d["latency_ms"]["p99"] for d in docs]),
        "p999": median([d["latency_ms"]["p99_9"] for d in docs]),
        "mean": median([d["latency_ms"]["mean"] for d in docs]),
        "put_p50": median([d["ops"]["put"]["p50"] for d in docs if "put" in d.get("ops", {})]),
        "errors": sum(d["errors"] for d in docs),
        "docs": docs,
    }


def watch_table(runs, names):
    """Watch latency: the mean beside the percentiles, and the Put's own
    latency (its commit), which every event's latency includes."""
    out = ["Watch latency (ms, from the Put's send to each watcher's event; medians of the "
           "rounds). The Put p50 is the Put's own round trip, which the event latency "
           "includes: the difference is the delivery to the watchers.\n",
           "| workload | watchers | etcd mean | lskv mean | mean lskv/etcd | etcd p50 | lskv p50 "
           "| p50 lskv/etcd | etcd p99 | lskv p99 | p99 lskv/etcd | etcd Put p50 | lskv Put p50 |",
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name in names:
        e = summarise(runs, name, "etcd")
        s = summarise(runs, name, "lskv")
        g = lambda x, k: x[k] if x else None  # noqa: E731
        w = (e or s)["docs"][0]["params"]["watchers"]
        out.append(f"| `{name}` | {w:,} | {fmt(g(e, 'mean'))} | {fmt(g(s, 'mean'))} "
                   f"| {ratio(g(s, 'mean'), g(e, 'mean'))} | {fmt(g(e, 'p50'))} "
                   f"| {fmt(g(s, 'p50'))} | {ratio(g(s, 'p50'), g(e, 'p50'))} "
                   f"| {fmt(g(e, 'p99'))} | {fmt(g(s, 'p99'))} | {ratio(g(s, 'p99'), g(e, 'p99'))} "
                   f"| {fmt(g(e, 'put_p50'))} | {fmt(g(s, 'put_p50'))} |")
    out.append("")
    return out


def mem_table(mem):
    """The trusted-memory table: lskv's trusted heap per key beside RSS."""
    out = []
    any_doc = next(iter(mem.values()))[0]
    keys, ks = any_doc["keys"], any_doc.get("key_size", 16)
    out.append(f"Trusted memory: {keys:,} keys of {ks} B with {any_doc.get('val_size', 16)} B "
               "values (loaded by the workload `mem-range-s-16x16`; lskv with `--cache-size 0`). "
               "lskv's trusted bytes are its `lskv_trusted_bytes` from /metrics: the heap in use "
               "(glibc mallinfo2 `uordblks + hblkhd`, all threads: every live malloc block with "
               "its header and rounding) minus what LevelDB reports for its memtables and block "
               "cache (`leveldb.approximate-memory-usage`); the value cache, off here, would count "
               "as trusted (it holds decrypted values). LevelDB's table "
               "cache and the buffers of connections in flight are left in, so it overstates the "
               "trusted core (key index, ledger tree and offsets, raft's in-memory log, ...); "
               "free heap, code, stacks and static data are not in it. Target: at most "
               f"100 B + key length = {100 + ks} B per key.\n")
    out.append("| server | keys | RSS MiB | peak RSS MiB | trusted MiB | trusted B/key "
               "| trusted B/key grown since ready | target B/key |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    med = {}
    for t in ("etcd", "lskv"):
        docs = mem.get(t, [])
        if not docs:
            continue
        rssm = median([d["vmrss_kb"] / 1024 for d in docs])
        hwm = median([d["vmhwm_kb"] / 1024 for d in docs])
        tr = [d["trusted_bytes"] for d in docs if d.get("trusted_bytes") is not None]
        if tr:
            trm = median(tr)
            grown = median([d["trusted_bytes"] - (d.get("start_trusted_bytes") or 0)
                            for d in docs if d.get("trusted_bytes") is not None])
            cells = (f"{trm / 2**20:.1f}", f"**{trm / keys:.1f}**", f"{grown / keys:.1f}",
                     f"{100 + ks}")
        else:
            trm = None
            cells = ("–", "–", "–", "–")
        med[t] = (rssm, trm)
        out.append(f"| {t} | {keys:,} | {rssm:.1f} | {hwm:.1f} | " + " | ".join(cells) + " |")
    if "etcd" in med and "lskv" in med:
        e_rss, l_tr = med["etcd"][0], med["lskv"][1]
        line = f"\nlskv/etcd: RSS **{med['lskv'][0] / e_rss:.2f}**"
        if l_tr is not None:
            line += (f"; lskv's trusted bytes over etcd's RSS **{l_tr / 2**20 / e_rss:.2f}** "
                     f"(etcd: {e_rss * 2**20 / keys:.0f} B of RSS per key)")
        out.append(line)
    out.append("")
    return out


def markdown(results, runs, rss, mem, restarts, env, plot_name):
    targets = [t for t in ("etcd", "lskv") if any(k[1] == t for k in runs)]
    names = [n for n in ORDER if any(k[0] == n for k in runs)]
    names += sorted({k[0] for k in runs} - set(names))
    out = []
    stamp = env.get("stamp", os.path.basename(results.rstrip("/")))
    out.append(f"# lskv vs etcd — {stamp}{' (quick smoke run)' if env.get('quick') else ''}\n")
    out.append(
        f"Same machine, one run: {env.get('nproc', '?')} CPUs ({env.get('cpu', '?')}), "
        f"{env.get('filesystem', '?')}, Linux {env.get('kernel', '?')}; "
        f"etcd {env.get('etcd_version', '?')} (Debian), lskv {env.get('lskv_commit', '?')}; "
        f"load average at start {env.get('loadavg_start', '?')}. "
        f"Medians of {env.get('rounds', '?')} round(s), targets alternating "
        f"({' '.join(targets)}), fresh data dirs per round, fsync on. "
        "Throughput ratio lskv/etcd above 1 means lskv is faster; latency ratio below 1 "
        "means lskv is faster. ± is half the spread of the rounds.\n")
    out.append("| workload | etcd req/s | lskv req/s | req/s lskv/etcd | etcd p50 ms | lskv p50 ms "
               "| p50 lskv/etcd | etcd p99 ms | lskv p99 ms | p99 lskv/etcd | etcd p99.9 ms "
               "| lskv p99.9 ms |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    failures = []
    for name in names:
        e = summarise(runs, name, "etcd")
        s = summarise(runs, name, "lskv")
        for t, x in (("etcd", e), ("lskv", s)):
            if x and x["errors"]:
                kinds = {}
                for d in x["docs"]:
                    for k in d.get("error_kinds", []):
                        kinds[k["error"]] = kinds.get(k["error"], 0) + k["count"]
                failures.append((name, t, x["errors"], kinds))
        g = lambda x, k: x[k] if x else None  # noqa: E731
        unit = " ev/s" if name.startswith("watch-latency") else ""
        cell = lambda x: (fmt(x["tput"]) + unit + x["tput_spread"]) if x else "–"  # noqa: E731
        out.append(
            f"| `{name}` | {cell(e)} | {cell(s)} | {ratio(g(s, 'tput'), g(e, 'tput'))} "
            f"| {fmt(g(e, 'p50'))} | {fmt(g(s, 'p50'))} | {ratio(g(s, 'p50'), g(e, 'p50'))} "
            f"| {fmt(g(e, 'p99'))} | {fmt(g(s, 'p99'))} | {ratio(g(s, 'p99'), g(e, 'p99'))} "
            f"| {fmt(g(e, 'p999'))} | {fmt(g(s, 'p999'))} |")
    out.append("")
    hist = []
    for t in targets:
        f = summarise(runs, "fresh-range-s-16x16", t)
        h = summarise(runs, "hot-range-s-16x16", t)
        if f and h:
            hist.append(f"{t} **{h['tput'] / f['tput']:.2f}**")
    if hist:
        out.append("Hot-key history: throughput of `hot-range-s-16x16` (one key with a "
                   "long revision history) over `fresh-range-s-16x16` (the same Range on a "
                   "fresh store): " + ", ".join(hist) + " (1 = history costs nothing).\n")
    cost = []
    for name3, name1 in CLUSTER_ROWS.items():
        per = []
        for t in targets:
            c, o = summarise(runs, name3, t), summarise(runs, name1, t)
            if c and o:
                per.append(f"{t} **{c['tput'] / o['tput']:.2f}**")
        if per:
            cost.append(f"`{name3}` over `{name1}`: " + ", ".join(per))
    if cost:
        out.append("3 members against 1: throughput of each 3-member row over its "
                   "single-server row, per server (1 = replication costs nothing): "
                   + "; ".join(cost) + ".\n")
    watch = [n for n in names if runs[next(k for k in runs if k[0] == n)][0]["workload"]
             == "watch-latency"]
    if watch:
        out += watch_table(runs, watch)
    out.append("Workloads:\n")
    for name in names:
        docs = (runs.get((name, "etcd")) or runs.get((name, "lskv")))
        d = docs[0]
        p = d["params"]
        if d["workload"] == "watch-latency":
            what = (f"{p['watchers']} watchers, {p['total']} Puts at {p['rate']:g}/s "
                    f"+ 1 conn for the Puts")
        elif d["workload"] == "lease-keepalive":
            what = f"{p['total']} keep-alives, {p['leases']} leases of TTL {p['lease_ttl']} s"
        else:
            what = (f"{p['total']} requests, key space {p['key_space_size']}"
                    f"{', preload %d' % p['preload'] if p['preload'] else ''}")
        out.append(f"- `{name}`: {DESCRIPTIONS.get(name, d['workload'])} "
                   f"({d['workload']}, {d['conns']} conns x {d['clients']} streams, {what}).")
    out.append("")
    if rss:
        out.append("Memory, from /proc after the range workloads (key space loaded): peak "
                   "resident set (VmHWM), resident set when the server became ready, and the "
                   "growth between the two per 100k keys.\n")
        out.append("| server | keys | peak RSS MiB | RSS at start MiB | growth MiB per 100k keys |")
        out.append("|---|--:|--:|--:|--:|")
        per = {}
        for t in targets:
            docs = rss.get(t, [])
            if not docs:
                continue
            hwm = median([d["vmhwm_kb"] / 1024 for d in docs])
            base = median([d.get("start_rss_kb", 0) / 1024 for d in docs])
            keys = docs[0]["keys"]
            per[t] = (hwm, (hwm - base) / keys * 100000)
            out.append(f"| {t} | {keys:,} | {hwm:.1f} | {base:.1f} | {per[t][1]:.1f} |")
        if "etcd" in per and "lskv" in per:
            out.append(f"\nlskv/etcd: peak RSS **{per['lskv'][0] / per['etcd'][0]:.2f}**, "
                       f"growth per 100k keys **{per['lskv'][1] / per['etcd'][1]:.2f}**")
        out.append("")
    if mem:
        out += mem_table(mem)
    if restarts:
        out.append("Restart: a server stopped (SIGTERM) after the writes below is started again "
                   "on its data dir; time from launch until it logs \"ready to serve client "
                   "requests\" (lskv: after verifying the whole raft log and ledger and "
                   "replaying the log since its last snapshot). Medians of the rounds.\n")
        out.append("| after | writes | keys | etcd s | lskv s | lskv/etcd |")
        out.append("|---|--:|--:|--:|--:|--:|")
        for state in sorted({k[0] for k in restarts}):
            cell = {}
            for t in ("etcd", "lskv"):
                docs = restarts.get((state, t), [])
                if docs:
                    cell[t] = (median([d["restart_s"] for d in docs]), docs[0])
            if not cell:
                continue
            doc = next(iter(cell.values()))[1]
            e = cell.get("etcd", (None,))[0]
            lv = cell.get("lskv", (None,))[0]
            r = f"**{lv / e:.2f}**" if e and lv else "-"
            out.append(f"| {state} ({STATES.get(state, '')}) | {doc['writes']:,} | {doc['keys']:,} | "
                       f"{'-' if e is None else f'{e:.2f}'} | {'-' if lv is None else f'{lv:.2f}'} | {r} |")
        out.append("")
    if failures:
        out.append("**Request errors** (the numbers above count successful requests only):\n")
        for name, t, n, kinds in failures:
            detail = "; ".join(f"{c} x {k}" for k, c in kinds.items())
            out.append(f"- `{name}` on {t}: {n} errors: {detail}")
        out.append("")
    else:
        out.append("Every request of every run succeeded (grpc-status 0, decodable response).\n")
    if plot_name:
        out.append(f"![latency distributions]({plot_name})\n")
    return "\n".join(out), names, targets


def plot(results, runs, names, targets, dest):
    """One panel per workload: latency against percentile, one line per target
    (the round with the median throughput)."""
    if not shutil.which("gnuplot"):
        print(f"{PROG}: gnuplot not found (Debian gnuplot-nox); no plot", file=sys.stderr)
        return None
    datadir = os.path.join(results, "plot")
    os.makedirs(datadir, exist_ok=True)
    panels = []
    for name in names:
        lines = []
        for t in targets:
            docs = runs.get((name, t))
            if not docs:
                continue
            docs = sorted(docs, key=lambda d: d["throughput_rps"])
            d = docs[len(docs) // 2]
            dat = os.path.join(datadir, f"{name}-{t}.dat")
            with open(dat, "w") as f:
                f.write("# x=100/(100-percentile) latency_ms percentile\n")
                for pct, ms in d["latency_ms"]["distribution"]:
                    if pct < 100 and ms > 0:
                        f.write(f"{100 / (100 - pct):.6g} {ms:.6g} {pct:.6g}\n")
            lines.append((t, dat, d["_round"]))
        if lines:
            panels.append((name, lines))
    if not panels:
        return None
    ext = os.path.splitext(dest)[1].lower()
    out = os.path.join(results, "latency" + (".svg" if ext == ".svg" else ".png"))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    colors = {"etcd": "#1f77b4", "lskv": "#d62728"}
    term = (f"set terminal svg size 1200,{330 * rows} dynamic font 'sans,10'" if ext == ".svg"
            else f"set terminal pngcairo size 1200,{330 * rows} font 'sans,9'")
    gp = [term, f"set output '{out}'",
          f"set multiplot layout {rows},{cols} title 'Latency distribution (ms, log) by percentile'",
          "set logscale xy", "set grid",
          "set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000)",
          "set xrange [1:*]", "set key top left", "set ylabel 'ms'"]
    for name, lines in panels:
        gp.append(f"set title '{name}'")
        parts = [f"'{dat}' using 1:2 with linespoints pt 7 ps 0.4 lw 2 lc rgb '{colors.get(t, 'black')}' "
                 f"title '{t} (r{rnd})'" for t, dat, rnd in lines]
        gp.append("plot " + ", ".join(parts))
    gp.append("unset multiplot")
    script = os.path.join(results, "latency.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{PROG}: gnuplot {script}: {r.stderr.strip()}", file=sys.stderr)
        return None
    if dest and os.path.abspath(dest) != os.path.abspath(out):
        shutil.copyfile(out, dest)
    return out


def main(argv):
    args = argv[1:]
    md_dest = plot_dest = None
    results = None
    while args:
        a = args.pop(0)
        if a == "--markdown" and args:
            md_dest = args.pop(0)
        elif a == "--plot" and args:
            plot_dest = args.pop(0)
        elif a.startswith("-") or results is not None:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        else:
            results = a
    if results is None:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    runs, rss, mem, restarts = load(results)
    if not runs:
        die(f"{results}: no lskv-bench results")
    env = {}
    try:
        with open(os.path.join(results, "env.json")) as f:
            env = json.load(f)
    except (OSError, ValueError):
        pass
    _, names, targets = markdown(results, runs, rss, mem, restarts, env, None)
    plotted = plot(results, runs, names, targets, plot_dest or os.path.join(results, "latency.png"))
    # Both copies of the table sit next to their copy of the plot.
    text, _, _ = markdown(results, runs, rss, mem, restarts, env, os.path.basename(plotted) if plotted else None)
    with open(os.path.join(results, "summary.md"), "w") as f:
        f.write(text + "\n")
    if md_dest:
        if plotted and plot_dest:
            rel = os.path.relpath(os.path.abspath(plot_dest), os.path.dirname(os.path.abspath(md_dest)))
            text, _, _ = markdown(results, runs, rss, mem, restarts, env, rel)
        with open(md_dest, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv)
