"""Backups: `etcdctl snapshot save` against lskvd (Maintenance.Snapshot) and
`lskvctl snapshot restore` into a new data dir (docs/backup-format.md).

The restored server must hold every key and every revision the source held
(full range dumps at every revision above the compaction point compared),
under new member and cluster ids; the source's ledger must hold the position
the backup names (lskvctl ledger audit --backup), the restored ledger must
start with the RESTORE entry and audit clean, and a backup whose bytes were
rewritten (its SHA-256 trailer recomputed) must be refused by name, leaving
nothing behind.
"""
import hashlib
import json
import os
import re
import subprocess

import grpc
import pytest

from conftest import LSKVCTL, dir_state, lskvd_only, rpc_pb2

pytestmark = lskvd_only  # lskvd's backup format and tools; etcd's status noted below


def lskvctl(*args, timeout=120):
    return subprocess.run([LSKVCTL] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def populate(s, big=40):
    """Puts, overwrites, deletes, a txn, a lease with keys, a compaction,
    values large enough for several frames. Returns the compact revision."""
    kv = s.kv()
    for i in range(30):
        kv.Put(rpc_pb2.PutRequest(key=b"k%02d" % i, value=b"v%d" % i))
    for i in range(0, 30, 3):
        kv.Put(rpc_pb2.PutRequest(key=b"k%02d" % i, value=b"again%d" % i))
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k05"))
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k1", range_end=b"k2"))
    compact = kv.Range(rpc_pb2.RangeRequest(key=b"k00")).header.revision
    for i in range(big):
        kv.Put(rpc_pb2.PutRequest(key=b"big/%03d" % i, value=os.urandom(30000)))
    kv.Txn(rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t1", value=b"x")),
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t2", value=b"y"))]))
    r = s.etcdctl("lease", "grant", "600")
    assert r.returncode == 0, r.stderr
    lease = r.stdout.split()[1]
    assert s.etcdctl("put", "leased", "z", "--lease=" + lease).returncode == 0
    kv.Compact(rpc_pb2.CompactionRequest(revision=compact))
    kv.Put(rpc_pb2.PutRequest(key=b"k00", value=b"after compaction"))
    return compact, lease


def dump(s, rev=0):
    """(header revision, every key at rev with all its fields) or the error."""
    try:
        r = s.kv().Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", revision=rev))
    except grpc.RpcError as e:
        return ("error", e.code(), e.details())
    return r.header.revision, [(k.key, k.value, k.create_revision, k.mod_revision, k.version,
                                k.lease) for k in r.kvs]


def save(s, path):
    r = s.etcdctl("snapshot", "save", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Snapshot saved at %s" % path in r.stdout
    data = open(path, "rb").read()
    # what etcdctl checked, and the trailer it found
    assert len(data) % 512 == 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    return data


def restore(backup, key, target, token="tok-restored"):
    peer = "http://127.0.0.1:%d" % target.peer_port
    target.extra = ["--initial-cluster-token", token] + target.extra
    return lskvctl("snapshot", "restore", backup, "--source-data-key", key,
                   "--data-dir", target.data_dir, "--name", target.name,
                   "--initial-cluster", "%s=%s" % (target.name, peer),
                   "--initial-advertise-peer-urls", peer, "--initial-cluster-token", token)


def ids(s):
    r = s.etcdctl("endpoint", "status", "-w", "json")
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)[0]["Status"]["header"]
    return h["member_id"], h["cluster_id"]


def assert_same_history(src, dst, compact, source_rev):
    assert dump(dst) == dump(src)
    for rev in range(compact, source_rev + 1):
        assert dump(dst, rev) == dump(src, rev), "revision %d" % rev
    # below the compaction point both answer etcd's error
    assert dump(dst, compact - 1) == dump(src, compact - 1)
    assert dump(dst, compact - 1)[0] == "error"


def test_save_status_restore_single_server(server_factory, tmp_path):
    src = server_factory("lskvd", extra=["--sig-ms-interval", "200"])
    compact, lease = populate(src)
    backup = tmp_path / "backup.db"
    save(src, backup)
    source_rev = dump(src)[0]
    assert os.path.getsize(backup) > 1_000_000  # 40 x 30 KB of values: many frames

    key = src.data_dir / "data.key"
    r = lskvctl("snapshot", "status", backup, "--source-data-key", key)
    assert r.returncode == 0, r.stderr
    status = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert int(status["revision"]) == source_rev
    # etcdctl's status reads the backup's bbolt face: the revisions it
    # holds, one key each, as an etcd snapshot's key bucket.
    r = src.etcdctl("snapshot", "status", backup, "-w", "json")
    assert r.returncode == 0, r.stderr
    face = json.loads(r.stdout)
    assert face["revision"] == source_rev
    assert face["totalKey"] == int(status["records"]), (face, status)
    assert 0 < face["totalSize"] < os.path.getsize(backup)
    src_member, src_cluster = ids(src)
    assert int(status["source cluster id"], 16) == src_cluster
    assert int(status["source member id"], 16) == src_member

    # The source's ledger holds the position the backup names.
    src_ledger = src.data_dir / "ledger"
    cert = src.data_dir / "identity" / "service.pem"
    r = lskvctl("ledger", "audit", src_ledger, "--service-cert", cert, "--backup", backup,
                "--source-data-key", key, "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "backup OK" in r.stdout

    dst = server_factory("lskvd", start=False, name="r1")
    r = restore(backup, key, dst)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100%" in r.stderr  # progress
    m = re.search(r"cluster ([0-9a-f]{16}), member ([0-9a-f]{16})", r.stdout)
    dst.start()
    dst_member, dst_cluster = ids(dst)
    assert (dst_member, dst_cluster) == (int(m.group(2), 16), int(m.group(1), 16))
    assert dst_member != src_member and dst_cluster != src_cluster
    assert "restored revision %d of cluster %016x" % (source_rev, src_cluster) in dst.log_text()
    assert_same_history(src, dst, compact, source_rev)

    # The lease came along with its key.
    r = dst.etcdctl("lease", "timetolive", lease, "--keys")
    assert r.returncode == 0 and "leased" in r.stdout, r.stdout + r.stderr

    # The restored ledger starts with the RESTORE entry, at the source's
    # revision, and audits clean; the source audit above tied the backup to
    # the source's ledger.
    r = lskvctl("ledger", "show", dst.data_dir / "ledger")
    first = r.stdout.splitlines()[0]
    assert "leaf=0 " in first and "type=other" in first and "rev=%d " % source_rev in first
    dcert = dst.data_dir / "identity" / "service.pem"
    r = lskvctl("ledger", "audit", dst.data_dir / "ledger", "--service-cert", dcert,
                "--ledger-secret", dst.data_dir / "ledger.secret", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    # Another ledger does not hold the backup's position.
    r = lskvctl("ledger", "audit", dst.data_dir / "ledger", "--service-cert", dcert,
                "--backup", backup, "--source-data-key", key, "--no-progress")
    assert r.returncode != 0

    # Writes go on from the source's revision; a receipt verifies offline.
    put = dst.kv().Put(rpc_pb2.PutRequest(key=b"new", value=b"1"))
    assert put.header.revision == source_rev + 1
    receipt = tmp_path / "receipt.json"
    r = lskvctl("receipt", "get", put.header.revision, "--endpoints", dst.url, "--out", receipt)
    assert r.returncode == 0, r.stdout + r.stderr
    r = lskvctl("receipt", "verify", receipt, "--service-cert", dcert)
    assert r.returncode == 0, r.stdout + r.stderr

    # A restart replays the RESTORE (the raft log still holds it).
    dst.restart()
    assert "applied already" in dst.log_text(True)
    src.kv().Put(rpc_pb2.PutRequest(key=b"new", value=b"1"))
    assert_same_history(src, dst, compact, source_rev)
    assert dump(dst) == dump(src)


def test_tampered_backup_is_refused(server_factory, tmp_path):
    src = server_factory("lskvd")
    populate(src, big=3)
    backup = tmp_path / "backup.db"
    data = bytearray(save(src, backup))
    key = src.data_dir / "data.key"

    # Bytes rewritten inside a frame, the SHA-256 trailer made valid again.
    start = data.index(b"LSKVBKUP")  # after the bbolt face (backup-format.md)
    assert start > 0 and start % 4096 == 0
    bad = bytearray(data)
    bad[start + 300] ^= 0x40
    bad[-32:] = hashlib.sha256(bytes(bad[:-32])).digest()
    tampered = tmp_path / "tampered.db"
    tampered.write_bytes(bytes(bad))
    dst = server_factory("lskvd", start=False, name="r1")
    before = sorted(os.listdir(tmp_path))
    r = restore(tampered, key, dst)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refusing the backup" in r.stderr and "authentication failed" in r.stderr
    assert "altered" in r.stderr
    assert not dst.data_dir.exists()
    assert sorted(os.listdir(tmp_path)) == before
    assert not [p for p in os.listdir(dst.workdir) if "restoring" in p]

    # The trailer alone wrong: damaged, said so.
    bad = bytearray(data)
    bad[-1] ^= 1
    tampered.write_bytes(bytes(bad))
    r = restore(tampered, key, dst)
    assert r.returncode == 1 and "SHA-256 trailer" in r.stderr, r.stderr
    assert not dst.data_dir.exists()

    # Another cluster's data key opens nothing.
    other = server_factory("lskvd")
    r = restore(backup, other.data_dir / "data.key", dst)
    assert r.returncode == 1 and "authentication failed" in r.stderr, r.stderr
    assert not dst.data_dir.exists()

    # A good restore whose copy is altered afterwards: lskvd refuses to start
    # and changes nothing in the data dir (but its empty lock file, made on
    # every first open: config/datadir.h).
    r = restore(backup, key, dst)
    assert r.returncode == 0, r.stderr
    copy = dst.data_dir / "restore" / "backup.lskv"
    bad = bytearray(copy.read_bytes())
    bad[bad.index(b"LSKVBKUP") + 400] ^= 1
    bad[-32:] = hashlib.sha256(bytes(bad[:-32])).digest()
    copy.write_bytes(bytes(bad))
    state = dir_state(dst.data_dir)
    with pytest.raises(RuntimeError, match="authentication failed"):
        dst.start(timeout=30)
    after = dir_state(dst.data_dir)
    assert after.pop("lock")[1] == hashlib.sha256(b"").hexdigest()
    assert after == state

    # The bbolt face is read by nothing but etcdctl's status: a changed key
    # in its first leaf (the trailer made valid) is no harm to a restore.
    dst3 = server_factory("lskvd", start=False, name="r3")
    assert restore(backup, key, dst3).returncode == 0
    copy = dst3.data_dir / "restore" / "backup.lskv"
    bad = bytearray(copy.read_bytes())
    leaf = 4 * 4096  # the first leaf; its first element's key at 16 + pos
    first_key = leaf + 16 + int.from_bytes(bad[leaf + 20:leaf + 24], "little")
    assert bad[first_key + 8] == ord("_")  # etcd's revision key form
    bad[first_key + 7] ^= 1
    bad[-32:] = hashlib.sha256(bytes(bad[:-32])).digest()
    copy.write_bytes(bytes(bad))
    dst3.start(timeout=60)
    assert dump(dst3)[1] == dump(src)[1]

    # Flags that derive other ids than lskvctl derived are refused by name.
    dst2 = server_factory("lskvd", start=False, name="r2")
    r = restore(backup, key, dst2)
    assert r.returncode == 0, r.stderr
    dst2.extra = ["--initial-cluster-token", "another-token"]
    with pytest.raises(RuntimeError, match="restored for cluster"):
        dst2.start(timeout=30)


def test_save_from_a_cluster_member_restore_one_and_three(cluster_factory, server_factory,
                                                          tmp_path):
    c = cluster_factory("lskvd", n=3)
    m0, m1 = c.members[0], c.members[1]
    compact, _ = populate(m0, big=5)
    backup = tmp_path / "backup.db"
    # From a member that did not take the writes: it must have applied them.
    rev = dump(m0)[0]
    for _ in range(100):
        if dump(m1)[0] == rev:
            break
    save(m1, backup)
    key = m1.data_dir / "data.key"
    source_rev = dump(m0)[0]

    one = server_factory("lskvd", start=False, name="solo")
    r = restore(backup, key, one)
    assert r.returncode == 0, r.stdout + r.stderr
    one.start()
    assert_same_history(m0, one, compact, source_rev)

    # Three new members, each restored from the same file with the same
    # --initial-cluster: every one imports it through the RESTORE entry.
    new = cluster_factory("lskvd", n=3, start=False)
    ic = new.members[0].initial_cluster
    for m in new.members:
        peer = "http://127.0.0.1:%d" % m.peer_port
        token = m.extra[1]  # the Cluster's --initial-cluster-token
        r = lskvctl("snapshot", "restore", backup, "--source-data-key", key,
                    "--data-dir", m.data_dir, "--name", m.name, "--initial-cluster", ic,
                    "--initial-advertise-peer-urls", peer, "--initial-cluster-token", token)
        assert r.returncode == 0, r.stdout + r.stderr
    new.start()
    for m in new.members:
        assert dump(m, source_rev) == dump(m0, source_rev), m.name
    new.members[2].kv().Put(rpc_pb2.PutRequest(key=b"after", value=b"restore"))
    assert dump(new.members[0])[0] == source_rev + 1


def test_etcdctl_snapshot_status_reads_the_backup_as_etcds(server_factory, tmp_path):
    """etcd's e2e snapshotTest: three keys, a lease, a key with the lease,
    then `snapshot save` and `snapshot status`; the same on etcd and lskvd,
    and a delete (a tombstone) on top. The revision is the same; etcd's
    total keys count every bbolt bucket (meta, lease, members...), lskvd's
    the revisions its backup holds. etcdctl's restore refuses the lskv
    backup (lskvctl restores it)."""
    got = {}
    for kind in ("etcd", "lskvd"):
        s = server_factory(kind)
        for k, v in (("key1", "val1"), ("key2", "val2"), ("key3", "val3")):
            assert s.etcdctl("put", k, v).returncode == 0
        lease = s.etcdctl("lease", "grant", "100").stdout.split()[1]
        assert s.etcdctl("put", "withlease", "withlease", "--lease=" + lease).returncode == 0
        assert s.etcdctl("del", "key1").returncode == 0
        path = tmp_path / ("%s.snapshot" % kind)
        save(s, path)
        r = s.etcdctl("snapshot", "status", path, "-w", "json")
        assert r.returncode == 0, r.stderr
        got[kind] = json.loads(r.stdout)
        r = s.etcdctl("snapshot", "status", path, "-w", "table")
        assert r.returncode == 0 and "REVISION" in r.stdout, r.stderr
    assert got["lskvd"]["revision"] == got["etcd"]["revision"] == 6
    assert got["lskvd"]["totalKey"] == 5  # key1, key2, key3, withlease, key1's tombstone
    assert got["etcd"]["totalKey"] >= 5
    r = subprocess.run(["etcdctl", "snapshot", "restore", str(tmp_path / "lskvd.snapshot"),
                        "--data-dir", str(tmp_path / "etcd-restored")], capture_output=True,
                       text=True, timeout=60, env={"ETCDCTL_API": "3"})
    assert r.returncode != 0 and "failed to unmarshal mvccpb.KeyValue" in r.stderr, r.stderr
    # And the other way: lskvctl names an etcd snapshot for what it is.
    r = lskvctl("snapshot", "status", tmp_path / "etcd.snapshot", "--source-data-key",
                s.data_dir / "data.key")  # the lskvd server's (the loop's last)
    assert r.returncode != 0 and "an etcd snapshot?" in r.stderr, r.stdout + r.stderr
