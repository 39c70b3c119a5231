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


def hash_kv(s, rev=0):
    """(hash, compact_revision, header revision) or the gRPC error."""
    import grpc
    try:
        r = rpc_pb2_grpc.MaintenanceStub(s.channel()).HashKV(rpc_pb2.HashKVRequest(revision=rev),
                                                             timeout=60)
        return r.hash, r.compact_revision, r.header.revision
    except grpc.RpcError as e:
        return e.code(), e.details()


def test_hash_kv_equals_etcds_over_random_histories(pair):
    """The same random puts, deletes, txns and compactions on etcd and
    lskvd: HashKV at the current revision and at earlier ones gives etcd's
    very number (etcd's bolt layout, recomputed over lskvd's verified
    records), and the same errors for compacted and future revisions."""
    import random
    rnd = random.Random(20261205)
    keys = [b"h/%d" % i for i in range(12)] + [b"h/x%d" % i for i in range(4)]
    for s in pair:
        s.rnd = random.Random(20261205)
    answers = ([], [])
    for rnd_round in range(6):
        for s, out in zip(pair, answers):
            kv = s.kv()
            rng = s.rnd
            for step in range(40):
                k = rng.choice(keys)
                what = rng.random()
                if what < 0.55:
                    kv.Put(rpc_pb2.PutRequest(key=k, value=b"v%d" % rng.randrange(1000)))
                elif what < 0.7:
                    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k))
                elif what < 0.8:
                    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"h/x", range_end=b"h/y"))
                else:
                    ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=x, value=b"t"))
                           for x in rng.sample(keys[:12], 3)]
                    kv.Txn(rpc_pb2.TxnRequest(success=ops))
            rev = kv.Range(rpc_pb2.RangeRequest(key=b"h/0")).header.revision
            if rnd_round in (2, 4):
                kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 30, physical=True))
            # rev - 30: the compaction point in rounds 2 and 4 (compacted)
            out.append([hash_kv(s), hash_kv(s, rev - 5), hash_kv(s, rev - 25),
                        hash_kv(s, rev - 30), hash_kv(s, rev + 9)])
    assert answers[1] == answers[0]
    assert len({a[0][0] for a in answers[0]}) == 6  # the hash changes as the data does
    errors = {x[1] for a in answers[0] for x in a if not isinstance(x[0], int)}
    assert errors == {"etcdserver: mvcc: required revision is a future revision",
                      "etcdserver: mvcc: required revision has been compacted"}, errors


def test_etcdctl_endpoint_hashkv_as_etcd(pair):
    got = []
    for s in pair:
        for i in range(5):
            assert s.etcdctl("put", "e%d" % i, "v%d" % i).returncode == 0
        assert s.etcdctl("del", "e1").returncode == 0
        r = s.etcdctl("endpoint", "hashkv")
        j = s.etcdctl("endpoint", "hashkv", "-w", "json")
        got.append((r.returncode, normalize(r.stdout, s), normalize(j.stdout, s)))
    assert got[1] == got[0]
    assert got[0][1].startswith("<URL>, ") or got[0][1].startswith("<EP>, "), got[0]
