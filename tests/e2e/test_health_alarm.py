"""/health while an alarm is raised: etcd 3.4 answers 503 {"health":"false"}
as long as any alarm is active (etcdhttp/metrics.go checkHealth: alarms
first, then the leader, then a read through raft), on the client URL and on
--listen-metrics-urls; lskvd must answer byte for byte the same."""
import subprocess

from conftest import free_port
from test_disk_full import MIB, kv_of, put_until_refused


def health(url):
    r = subprocess.run(["curl", "-sS", "-w", " %{http_code}", url + "/health"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def transcript(s, metrics_url):
    out = [health(s.url), health(metrics_url)]
    put_until_refused(kv_of(s), {}, limit=400)  # raises NOSPACE
    out += [health(s.url), health(metrics_url)]
    r = s.etcdctl("alarm", "disarm")
    assert r.returncode == 0, r.stderr
    out += [health(s.url), health(metrics_url)]
    return out


def test_health_is_false_while_nospace_is_raised(server_factory):
    out = {}
    for kind in ("etcd", "lskvd"):
        metrics_url = "http://127.0.0.1:%d" % free_port()
        s = server_factory(kind, extra=["--quota-backend-bytes", str(3 * MIB),
                                        "--listen-metrics-urls", metrics_url])
        out[kind] = transcript(s, metrics_url)
    assert out["etcd"][:2] == ['{"health":"true"} 200'] * 2
    assert out["etcd"][2:4] == ['{"health":"false"}\n 503'] * 2
    assert out["etcd"][4:] == ['{"health":"true"} 200'] * 2
    assert out["lskvd"] == out["etcd"]
