"""lskv-bench's streaming workloads (issue 9) against the server under test:
watch-latency gets every watcher's event of every Put, lease-keepalive gets
an answer for every keep-alive with the lease's id and a TTL; both exit 0
and write their counts to the JSON that bench/report.py reads."""
import json
import subprocess
from pathlib import Path

from conftest import LSKVD, REPO


def bench_path():
    """lskv-bench next to $LSKVD (the same build flavour), else the debug one."""
    p = Path(LSKVD).parent / "lskv-bench"
    return str(p) if p.exists() else str(REPO / "build" / "debug" / "lskv-bench")


def run_bench(server, tmp_path, *args):
    out = tmp_path / "bench.json"
    r = subprocess.run([bench_path(), "--endpoints", server.url, "--quiet", "--json", str(out)]
                       + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text())


def test_watch_latency_every_event(lskvd, tmp_path):
    # 7 watchers over 3 streams on 2 connections (3, 2, 2), Puts unthrottled.
    d = run_bench(lskvd, tmp_path, "--conns", "2", "--clients", "3", "watch-latency",
                  "--watchers", "7", "--total", "40", "--rate", "0", "--val-size", "64")
    assert d["workload"] == "watch-latency" and d["errors"] == 0
    assert d["puts"] == 40 and d["watchers"] == 7
    assert d["requests"] == 40 * 7 == d["latency_ms"]["count"]
    assert d["ops"]["put"]["count"] == 40
    # an event cannot beat the send of its Put
    assert 0 < d["latency_ms"]["min"] <= d["latency_ms"]["p50"]


def test_lease_keepalive_every_answer(lskvd, tmp_path):
    d = run_bench(lskvd, tmp_path, "--conns", "2", "--clients", "5", "lease-keepalive",
                  "--leases", "12", "--lease-ttl", "60", "--total", "500")
    assert d["workload"] == "lease-keepalive" and d["errors"] == 0
    assert d["requests"] == 500 == d["latency_ms"]["count"]
    assert d["params"]["leases"] == 12 and d["params"]["preload"] == 12
