"""Maintenance as etcd 3.4 has it (issue 11 point 3): Defragment through
etcdctl, gRPC and the JSON gateway; what it does to the engine's files."""
import json
import urllib.request

from conftest import normalize, rpc_pb2, rpc_pb2_grpc


def test_etcdctl_defrag_and_gateway_as_etcd(pair):
    got = []
    for s in pair:
        assert s.etcdctl("put", "k", "v").returncode == 0
        r = s.etcdctl("defrag")
        req = urllib.request.Request("http://%s/v3/maintenance/defragment" % s.endpoint,
                                     data=b"{}", method="POST")
        body = json.loads(urllib.request.urlopen(req, timeout=30).read())
        d = rpc_pb2_grpc.MaintenanceStub(s.channel()).Defragment(rpc_pb2.DefragmentRequest())
        got.append((r.returncode, normalize(r.stdout, s), body, d.HasField("header")))
        assert s.etcdctl("get", "k", "--print-value-only").stdout.strip() == "v"
    assert got[1] == got[0]
    assert got[0][1] == "Finished defragmenting etcd member[<EP>]", got[0]


def test_defragment_gives_back_what_compaction_freed(lskvd):
    """2000 values of 16 KiB written three times over, compacted to the
    last revision: the engine still holds the old records' bytes until
    Defragment, which gives most of them back; every key is still served
    (and verified) after it."""
    kv = lskvd.kv()
    maint = rpc_pb2_grpc.MaintenanceStub(lskvd.channel())
    for rnd in range(3):
        for i in range(2000):
            kv.Put(rpc_pb2.PutRequest(key=b"d%04d" % i, value=bytes([65 + rnd]) * 16384))
    rev = kv.Range(rpc_pb2.RangeRequest(key=b"d0000")).header.revision
    kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True))
    before = maint.Status(rpc_pb2.StatusRequest()).dbSize
    maint.Defragment(rpc_pb2.DefragmentRequest(), timeout=120)
    after = maint.Status(rpc_pb2.StatusRequest()).dbSize
    print("db size %.1f MB -> %.1f MB" % (before / 1e6, after / 1e6))
    assert after < before * 0.6, (before, after)
    r = kv.Range(rpc_pb2.RangeRequest(key=b"d", range_end=b"e"))
    assert r.count == 2000 and all(x.value == b"C" * 16384 for x in r.kvs)
    assert "finished defragmenting" in lskvd.log_text()
