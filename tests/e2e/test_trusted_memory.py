"""lskvd's /metrics splits its heap into trusted and untrusted bytes (issue 8
point 9; `make bench` reports the per-key figure for a million keys): the
gauges add up, the trusted figure follows the key index, and what LevelDB
holds of the sealed records is counted as untrusted."""
import urllib.request

from etcd3.etcdrpc import rpc_pb2

from conftest import lskvd_only

pytestmark = [lskvd_only]

N = 5000
KEY = 64  # bytes per key: large enough that the index must show


def gauges(server):
    text = urllib.request.urlopen(server.url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and p[0].startswith("lskv_") and p[0].endswith("_bytes"):
            out[p[0]] = int(p[1])
    return out


def check_sum(g):
    assert g["lskv_heap_in_use_bytes"] > 0
    assert g["lskv_untrusted_bytes"] >= 0
    assert g["lskv_trusted_bytes"] == g["lskv_heap_in_use_bytes"] - g["lskv_untrusted_bytes"]


def put_keys(server, prefix):
    kv = server.kv()
    for i in range(N):
        kv.Put(rpc_pb2.PutRequest(key=(prefix + "%d" % i).rjust(KEY, "k").encode(), value=b"v"))
    return kv


def test_trusted_bytes_follow_the_keys(server_factory):
    s = server_factory("lskvd", extra=["--cache-size", "0"])
    before = gauges(s)
    check_sum(before)
    put_keys(s, "a")
    after = gauges(s)
    check_sum(after)
    # Every key is held by the trusted index: at least its bytes each.
    assert after["lskv_trusted_bytes"] - before["lskv_trusted_bytes"] >= N * KEY


def test_engine_memory_is_untrusted(server_factory):
    s = server_factory("lskvd", extra=["--cache-size", "0"])
    kv = s.kv()
    big = b"x" * 4096
    for i in range(200):
        kv.Put(rpc_pb2.PutRequest(key=b"big%d" % i, value=big))
    s.restart()
    kv = s.kv()
    before = gauges(s)
    for i in range(200):
        assert kv.Range(rpc_pb2.RangeRequest(key=b"big%d" % i)).kvs[0].value == big
    after = gauges(s)
    check_sum(after)
    # The sealed records read sit in LevelDB (its block cache or memtable):
    # untrusted bytes, not trusted ones.
    assert after["lskv_untrusted_bytes"] >= 200 * 4096
    assert after["lskv_trusted_bytes"] - before["lskv_trusted_bytes"] < 200 * 4096 // 2
