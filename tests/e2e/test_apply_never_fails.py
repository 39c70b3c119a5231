"""No client request can fail apply (issue 7): results too big for one ledger
frame are recorded, not fatal, and the node restarts on the same log.

A Txn that ranges over ~40 MiB of values (every request limit holds) must be
answered as etcd answers it; a DeleteRange over ~40 MiB of keys makes a write
set above the ledger's frame cap. Both are compared with etcd,
then lskvd is restarted on the same data dir (raft replays the same entries)
and must serve, and its ledger must audit clean."""
import subprocess

from etcd3.etcdrpc import rpc_pb2

from conftest import LSKVCTL, assert_serves

MIB = 1024 * 1024


def fill_values(server, n=40, size=MIB):
    kv = server.kv()
    for i in range(n):
        kv.Put(rpc_pb2.PutRequest(key=b"big/%03d" % i, value=bytes([65 + i % 26]) * size),
               timeout=60)


def big_txn(server):
    """Txn: range over every big value, then put a small key (a KV entry with claims)."""
    req = rpc_pb2.TxnRequest(
        compare=[],
        success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(
                     key=b"big/", range_end=b"big0")),
                 rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"after", value=b"1"))],
        failure=[])
    return server.kv().Txn(req, timeout=120)


def summary(resp):
    r = resp.responses[0].response_range
    return (resp.succeeded, r.count, len(r.kvs), sum(len(kv.value) for kv in r.kvs),
            [kv.key for kv in r.kvs], resp.responses[1].WhichOneof("response"))


def audit(server):
    d = server.data_dir
    r = subprocess.run([LSKVCTL, "ledger", "audit", str(d / "ledger"), "--service-cert",
                        str(d / "identity" / "service.pem"), "--ledger-secret",
                        str(d / "ledger.secret"), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_txn_with_a_40_mib_response_and_restart(etcd, lskvd):
    for s in (etcd, lskvd):
        fill_values(s)
    want, got = big_txn(etcd), big_txn(lskvd)
    assert summary(got) == summary(want)
    assert summary(got)[3] == 40 * MIB
    assert got.header.revision == want.header.revision
    lskvd.restart()
    assert_serves(lskvd)
    r = lskvd.etcdctl("get", "after", "--print-value-only")
    assert r.returncode == 0 and r.stdout.strip() == "1"
    if not lskvd.is_etcd:
        lskvd.stop_cleanly()
        audit(lskvd)


def test_delete_range_over_40_mib_of_keys_and_restart(etcd, lskvd):
    for s in (etcd, lskvd):
        kv = s.kv()
        for i in range(40):
            kv.Put(rpc_pb2.PutRequest(key=b"k/%02d/" % i + b"x" * MIB, value=b"v"), timeout=60)
    reqs = rpc_pb2.DeleteRangeRequest(key=b"k/", range_end=b"k0", prev_kv=False)
    want, got = etcd.kv().DeleteRange(reqs, timeout=120), lskvd.kv().DeleteRange(reqs,
                                                                                 timeout=120)
    assert got.deleted == want.deleted == 40
    assert got.header.revision == want.header.revision
    lskvd.restart()
    assert_serves(lskvd)
    left = lskvd.kv().Range(rpc_pb2.RangeRequest(key=b"k/", range_end=b"k0", count_only=True))
    assert left.count == 0
    if not lskvd.is_etcd:
        lskvd.stop_cleanly()
        audit(lskvd)
