"""Acknowledged writes survive SIGKILL: each with its value and revision."""
import random
import threading

import grpc
import pytest

from conftest import rpc_pb2

WRITERS = 4
PUTS_PER_WRITER = 500


@pytest.mark.slow
def test_acked_writes_survive_sigkill(lskvd):
    kv = lskvd.kv()
    acked = {}           # key -> revision the server acknowledged
    in_flight = {}       # writer -> key whose put got no answer
    lock = threading.Lock()
    kill_at = random.Random().randint(300, 1200)
    killed = threading.Event()

    def writer(w):
        for i in range(PUTS_PER_WRITER):
            k = b"dur/%d/%05d" % (w, i)
            try:
                r = kv.Put(rpc_pb2.PutRequest(key=k, value=b"value-" + k), timeout=20)
            except grpc.RpcError:
                in_flight[w] = k
                return
            with lock:
                acked[k] = r.header.revision
                if len(acked) >= kill_at and not killed.is_set():
                    killed.set()
                    lskvd.proc.kill()  # SIGKILL while the other writers are mid-put

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert killed.is_set() and len(acked) < WRITERS * PUTS_PER_WRITER, "not killed mid-loop"
    lskvd.proc.wait()
    revs = sorted(acked.values())
    assert len(set(revs)) == len(revs), "two acked puts share a revision"

    lskvd.start()
    kv = lskvd.kv()
    missing, wrong = [], []
    for k, rev in acked.items():
        r = kv.Range(rpc_pb2.RangeRequest(key=k), timeout=20)
        if not r.kvs:
            missing.append(k)
        elif (r.kvs[0].mod_revision, r.kvs[0].create_revision, r.kvs[0].value) != (rev, rev, b"value-" + k):
            wrong.append((k, rev, r.kvs[0]))
    assert not missing, "%d acknowledged writes lost, e.g. %s" % (len(missing), missing[:5])
    assert not wrong, "acknowledged writes changed: %s" % wrong[:3]

    # Unacknowledged puts may or may not have landed, but never half-way.
    for k in in_flight.values():
        r = kv.Range(rpc_pb2.RangeRequest(key=k), timeout=20)
        assert not r.kvs or r.kvs[0].value == b"value-" + k

    everything = kv.Range(rpc_pb2.RangeRequest(key=b"dur/", range_end=b"dur0"), timeout=20)
    assert len(acked) <= everything.count <= len(acked) + len(in_flight)
    assert everything.header.revision >= revs[-1]
    assert everything.header.revision == 1 + everything.count  # one revision per put, none lost

    r = kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"restart"), timeout=20)
    assert r.header.revision == everything.header.revision + 1
    r = kv.Range(rpc_pb2.RangeRequest(key=b"after"), timeout=20)
    assert r.kvs[0].mod_revision == everything.header.revision + 1


def test_graceful_restart_keeps_everything(lskvd):
    kv = lskvd.kv()
    revs = [kv.Put(rpc_pb2.PutRequest(key=b"g%03d" % i, value=b"%d" % i)).header.revision
            for i in range(100)]
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"g050"))
    lskvd.stop_cleanly()
    lskvd.start()
    kv = lskvd.kv()
    r = kv.Range(rpc_pb2.RangeRequest(key=b"g", range_end=b"h"), timeout=20)
    assert r.header.revision == revs[-1] + 1
    assert r.count == 99
    assert [(kvs.key, kvs.mod_revision) for kvs in r.kvs] == [
        (b"g%03d" % i, revs[i]) for i in range(100) if i != 50]
    old = kv.Range(rpc_pb2.RangeRequest(key=b"g050", revision=revs[-1]), timeout=20)
    assert old.kvs[0].value == b"50"
