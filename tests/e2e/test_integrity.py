"""Host tampering is detected (DATA_LOSS, never the value); nothing is plain at rest."""
import os
import stat
import struct
import uuid

import grpc
import pytest

from conftest import lskvd_only, rpc_pb2

OTHER_PUTS = 200


def secret_pair():
    tag = uuid.uuid4().hex
    return ("k-secret-" + tag).encode(), ("v-secret-" + tag[::-1]).encode()


def files_containing(root, needle):
    """Every file under root whose raw bytes contain needle."""
    hits = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                if needle in fh.read():
                    hits.append(os.path.relpath(p, root))
    return hits


def write_then_snapshot(server, key, value):
    """Puts key then OTHER_PUTS other keys (past --snapshot-count); returns key's revision."""
    kv = server.kv()
    rev = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=20).header.revision
    for i in range(OTHER_PUTS):
        kv.Put(rpc_pb2.PutRequest(key=b"other/%04d" % i, value=b"x%d" % i), timeout=20)
    return rev


def start_with_snapshots(server_factory):
    return server_factory("lskvd", extra=["--snapshot-count", "50"])


def tamper(server, rev, how):
    import plyvel
    server.stop_cleanly()
    db = plyvel.DB(str(server.data_dir / "engine"), create_if_missing=False)
    try:
        rid = struct.pack(">qq", rev, 0)
        body = db.get(rid)
        assert body is not None, "no engine record for revision %d" % rev
        if how == "flip":
            b = bytearray(body)
            b[len(b) // 2] ^= 0x01
            db.put(rid, bytes(b))
        else:
            db.delete(rid)
    finally:
        db.close()
    server.start()


def assert_data_loss(server, key, value):
    r = server.etcdctl("get", key.decode())
    assert r.returncode != 0, "tampered key was served: %r" % r.stdout
    assert value.decode() not in r.stdout + r.stderr
    assert "corrupt" in r.stderr, r.stderr
    kv = server.kv()
    for req in (rpc_pb2.RangeRequest(key=key),
                rpc_pb2.RangeRequest(key=key, serializable=True),
                rpc_pb2.RangeRequest(key=b"k-secret-", range_end=b"k-secret.")):
        with pytest.raises(grpc.RpcError) as ei:
            kv.Range(req, timeout=20)
        assert ei.value.code() == grpc.StatusCode.DATA_LOSS
        assert ei.value.details() == "etcdserver: corrupt cluster"
    # Untouched keys are still served.
    for i in (0, OTHER_PUTS // 2, OTHER_PUTS - 1):
        r = server.etcdctl("get", "other/%04d" % i, "--print-value-only")
        assert r.returncode == 0 and r.stdout.strip() == "x%d" % i, r.stderr
    assert server.alive()


@lskvd_only
@pytest.mark.slow
@pytest.mark.parametrize("how", ["flip", "delete"])
def test_tampered_record_is_data_loss(server_factory, how):
    s = start_with_snapshots(server_factory)
    key, value = secret_pair()
    rev = write_then_snapshot(s, key, value)
    tamper(s, rev, how)
    assert_data_loss(s, key, value)


@lskvd_only
@pytest.mark.slow
def test_nothing_plain_at_rest(server_factory):
    s = start_with_snapshots(server_factory)
    key, value = secret_pair()
    write_then_snapshot(s, key, value)
    kv = s.kv()
    key2, value2 = secret_pair()  # after the last snapshot: only in the raft log
    kv.Put(rpc_pb2.PutRequest(key=key2, value=value2), timeout=20)
    s.stop_cleanly()
    for needle in (key, value, key2, value2, b"other/0100"):
        assert files_containing(s.data_dir, needle) == [], needle
    assert (s.data_dir / "raft").is_dir() and (s.data_dir / "engine").is_dir()
    mode = stat.S_IMODE(os.stat(s.data_dir / "data.key").st_mode)
    assert mode == 0o600, oct(mode)


def test_grep_finds_plaintext_in_etcd(etcd):
    """Checks the checker: etcd keeps keys and values in the clear, and we see them."""
    key, value = secret_pair()
    write_then_snapshot(etcd, key, value)
    etcd.stop_cleanly()
    assert files_containing(etcd.data_dir, key)
    assert files_containing(etcd.data_dir, value)


def test_checks_can_fail(etcd, tmp_path):
    """The DATA_LOSS check rejects a server that serves the key, and tamper()
    really changes / removes the record with id (rev, 0) in a LevelDB engine."""
    import plyvel
    key, value = secret_pair()
    etcd.kv().Put(rpc_pb2.PutRequest(key=key, value=value), timeout=20)
    with pytest.raises(AssertionError):
        assert_data_loss(etcd, key, value)

    class FakeServer:
        data_dir = tmp_path
        stop_cleanly = start = staticmethod(lambda: 0)
    db = plyvel.DB(str(tmp_path / "engine"), create_if_missing=True)
    rid = struct.pack(">qq", 7, 0)
    db.put(rid, b"sealed-body")
    db.put(struct.pack(">qq", 7, 1), b"neighbour")
    db.close()
    tamper(FakeServer, 7, "flip")
    db = plyvel.DB(str(tmp_path / "engine"))
    assert db.get(rid) not in (None, b"sealed-body") and len(db.get(rid)) == 11
    db.close()
    tamper(FakeServer, 7, "delete")
    db = plyvel.DB(str(tmp_path / "engine"))
    assert db.get(rid) is None and db.get(struct.pack(">qq", 7, 1)) == b"neighbour"
    db.close()
