"""Review: many concurrent clients, restarts after compaction and snapshots,
SIGTERM while clients write."""
import random
import threading
import time

import grpc
import pytest

from conftest import rpc_pb2
from test_differential import clear_headers

P = rpc_pb2


def hammer(server, threads=50, seconds=4.0):
    """threads clients mix puts / txns / deletes / ranges for a while.

    Returns (acks, final_rev): acks is a list of (revision, kind, payload) for
    every acknowledged write that changed the store."""
    acks, lock, errors = [], threading.Lock(), []
    deadline = time.time() + seconds

    def client(t):
        kv = server.kv()  # own channel = own connection
        rnd = random.Random(t)
        i = 0
        while time.time() < deadline:
            i += 1
            k = b"c/%02d/%d" % (rnd.randrange(10), rnd.randrange(20))
            v = b"%d.%d" % (t, i)
            try:
                x = rnd.random()
                if x < 0.4:
                    r = kv.Put(P.PutRequest(key=k, value=v), timeout=30)
                    with lock:
                        acks.append((r.header.revision, "put", k, v))
                elif x < 0.6:
                    k2 = b"c/%02d/%d" % (rnd.randrange(10), rnd.randrange(20))
                    req = P.TxnRequest()
                    req.compare.add(key=k, target=P.Compare.VERSION, result=P.Compare.GREATER,
                                    version=0)
                    req.success.add().request_put.CopyFrom(P.PutRequest(key=k, value=v))
                    if k2 != k:
                        req.success.add().request_put.CopyFrom(P.PutRequest(key=k2, value=v))
                    req.failure.add().request_put.CopyFrom(P.PutRequest(key=k, value=b"new" + v))
                    r = kv.Txn(req, timeout=30)
                    with lock:
                        if r.succeeded:
                            acks.append((r.header.revision, "txn", (k, k2), v))
                        else:
                            acks.append((r.header.revision, "put", k, b"new" + v))
                elif x < 0.7:
                    r = kv.DeleteRange(P.DeleteRangeRequest(key=k), timeout=30)
                    if r.deleted:
                        with lock:
                            acks.append((r.header.revision, "del", k, None))
                else:
                    r = kv.Range(P.RangeRequest(key=b"c/", range_end=b"c0",
                                                serializable=rnd.random() < 0.5), timeout=30)
                    assert r.count == len(r.kvs)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return

    ts = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    return acks


def test_fifty_concurrent_clients(lskvd):
    acks = hammer(lskvd)
    revs = [a[0] for a in acks]
    assert len(acks) > 200
    assert len(set(revs)) == len(revs), "two acked writes share a revision"
    # Replay the acks in revision order: the model must equal the final state.
    model = {}
    for rev, kind, k, v in sorted(acks, key=lambda a: a[0]):
        if kind == "put":
            model[k] = (v, rev)
        elif kind == "txn":
            for kk in k:
                model[kk] = (v, rev)
        else:
            model.pop(k, None)
    kv = lskvd.kv()
    r = kv.Range(P.RangeRequest(key=b"c/", range_end=b"c0"), timeout=30)
    assert r.header.revision == max(revs) == len(revs) + 1, "revision != 1 + number of writes"
    assert {x.key: (x.value, x.mod_revision) for x in r.kvs} == model
    # Every historical revision reads back what the ack said.
    for rev, kind, k, v in random.Random(1).sample(acks, 100):
        for kk in (k if kind == "txn" else (k,)):
            h = kv.Range(P.RangeRequest(key=kk, revision=rev), timeout=30)
            assert [(x.value, x.mod_revision) for x in h.kvs] == ([] if kind == "del" else [(v, rev)])


def history(server, upto):
    """Every revision's full range, headers cleared (comparable across restarts)."""
    kv = server.kv()
    out = {}
    for rev in range(1, upto + 1):
        try:
            out[rev] = clear_headers(kv.Range(P.RangeRequest(key=b"\x00", range_end=b"\x00",
                                                              revision=rev), timeout=30))
        except grpc.RpcError as e:
            out[rev] = (e.code(), e.details())
    return out


def workload(server, n=60):
    kv = server.kv()
    for i in range(n):
        k = b"w/%d" % (i % 9)
        if i % 7 == 6:
            kv.DeleteRange(P.DeleteRangeRequest(key=k), timeout=30)
        elif i % 5 == 4:
            req = P.TxnRequest()
            req.success.add().request_put.CopyFrom(P.PutRequest(key=k, value=b"t%d" % i))
            req.success.add().request_put.CopyFrom(P.PutRequest(key=k + b"x", value=b"t%d" % i))
            kv.Txn(req, timeout=30)
        else:
            kv.Put(P.PutRequest(key=k, value=b"v%d" % i), timeout=30)
    return kv.Range(P.RangeRequest(key=b"w"), timeout=30).header.revision


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restart_after_snapshots_and_compaction(pair_snap, kill):
    """--snapshot-count 8: ranges at every old revision equal before and after a
    restart, before and after a compaction, and equal to etcd's."""
    hists = []
    for s in pair_snap:
        top = workload(s)
        before = history(s, top)
        s.kill() if kill else s.stop_cleanly()
        s.start()
        assert history(s, top) == before, "%s history changed across restart" % s.kind
        s.kv().Compact(P.CompactionRequest(revision=top // 2, physical=True), timeout=30)
        top2 = workload(s, 20)
        after = history(s, top2)
        s.kill() if kill else s.stop_cleanly()
        s.start()
        assert history(s, top2) == after, "%s history changed across restart after compaction" % s.kind
        r = s.kv().Put(P.PutRequest(key=b"w/last", value=b"x"), timeout=30)
        assert r.header.revision == top2 + 1
        hists.append((before, after))
    assert hists[1] == hists[0]


@pytest.fixture
def pair_snap(server_factory):
    return (server_factory("etcd", extra=["--snapshot-count", "8"]),
            server_factory("lskvd", extra=["--snapshot-count", "8"]))


def test_sigterm_while_writing(lskvd):
    """SIGTERM with 8 writers busy: a clean exit, and no acked write lost."""
    acked, lock = {}, threading.Lock()
    stop = threading.Event()

    def writer(w):
        kv = lskvd.kv()
        i = 0
        while not stop.is_set():
            k = b"term/%d/%06d" % (w, i)
            i += 1
            try:
                r = kv.Put(P.PutRequest(key=k, value=k), timeout=10)
            except grpc.RpcError:
                return
            with lock:
                acked[k] = r.header.revision

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in ts:
        t.start()
    time.sleep(1.5)
    t0 = time.time()
    lskvd.stop_cleanly(timeout=20)
    took = time.time() - t0
    stop.set()
    for t in ts:
        t.join(30)
    assert len(acked) > 50
    assert took < 10, "SIGTERM took %.1fs" % took
    lskvd.start()
    kv = lskvd.kv()
    r = kv.Range(P.RangeRequest(key=b"term/", range_end=b"term0"), timeout=30)
    got = {x.key: x.mod_revision for x in r.kvs}
    lost = [k for k in acked if got.get(k) != acked[k]]
    assert not lost, "%d acked writes lost or changed, e.g. %s" % (len(lost), lost[:3])
    assert r.header.revision == 1 + r.count
