"""A full disk (issue 8 point 4). lskvd keeps its data dir on a 64 MiB tmpfs
the test mounts: Puts until the NOSPACE alarm, reads (and deletes) still
served, a kill -9 and a restart on a disk filled to the last byte, then
space freed, `alarm disarm`, writes again, and every acknowledged write
there throughout. --quota-backend-bytes raises the same alarm as in etcd.
etcd's run on the same tmpfs is the last test (it exits and cannot restart).
"""
import json
import os
import subprocess
import threading
import time

import grpc
import pytest

from conftest import TARGET, lskvd_only, rpc_error, rpc_pb2, rpc_pb2_grpc

MIB = 1 << 20
NOSPACE = "etcdserver: mvcc: database space exceeded"
VALUE_BYTES = 64 * 1024


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 MiB tmpfs (we run as root, here and in CI); unmounted at teardown,
    after the servers (fixtures tear down in reverse order)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, "cannot mount a tmpfs (needs root): %s" % r.stderr
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path, limit=None):
    """Writes zeros to path until ENOSPC (or limit bytes); returns bytes written."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (MIB, 65536, 4096, 512, 1):
            while limit is None or n < limit:
                try:
                    n += os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return n


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def put_until_refused(kv, acked, prefix=b"k", limit=3000):
    """Puts fresh 64 KiB values until one is refused; returns (code, details)."""
    for _ in range(limit):
        key = prefix + b"%06d" % len(acked)
        value = os.urandom(VALUE_BYTES)
        code, r = rpc_error(kv.Put, rpc_pb2.PutRequest(key=key, value=value), timeout=30)
        if code != grpc.StatusCode.OK:
            return code, r
        acked[key] = value
    pytest.fail("no Put refused after %d" % limit)


def kv_of(server):
    """A KV stub on a channel of its own: grpc's shared subchannel may still
    be the one to the killed process."""
    return rpc_pb2_grpc.KVStub(grpc.insecure_channel(server.endpoint, [
        ("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1),
        ("grpc.enable_retries", 0)]))


def assert_all_there(server, acked):
    r = kv_of(server).Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), timeout=30)
    got = {kv.key: kv.value for kv in r.kvs}
    missing = [k for k in acked if got.get(k) != acked[k]]
    assert not missing, "%d acknowledged writes missing or changed, e.g. %r" % (
        len(missing), missing[:3])


def member_id(server):
    return kv_of(server).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=10).header.member_id


def alarm_lines(server):
    r = server.etcdctl("alarm", "list")
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def status_errors(server):
    """Maintenance.Status errors (etcd3's stubs predate the field: etcdctl)."""
    r = server.etcdctl("endpoint", "status", "-w", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]["Status"].get("errors", [])


def put_op(key):
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))


@lskvd_only
def test_full_disk_alarm_reads_restart_disarm(tmpfs, server_factory):
    filler = tmpfs / "filler"
    fill(filler, 16 * MIB)  # freed at the end
    s = server_factory("lskvd", start=False)
    s.data_dir = tmpfs / "data"
    s.start()
    kv = kv_of(s)
    acked = {}
    code, details = put_until_refused(kv, acked)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)
    assert len(acked) >= 20, "only %d Puts fitted" % len(acked)
    n_fitted = len(acked)
    mid = member_id(s)
    nospace = "memberID:%d alarm:NOSPACE" % mid
    assert alarm_lines(s) == [nospace]
    assert status_errors(s) == [nospace + " "]  # etcd's text, trailing space included
    assert "raising NOSPACE alarm" in s.log_text()

    # Reads, deletes and compaction are served; whatever adds data is refused.
    assert_all_there(s, acked)
    r = kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_range=rpc_pb2.RangeRequest(key=b"k000000"))]), timeout=10)
    assert r.responses[0].response_range.kvs[0].value == acked[b"k000000"]
    code, details = rpc_error(kv.Txn, rpc_pb2.TxnRequest(success=[put_op(b"t")]), timeout=10)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)
    assert kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k000001"), timeout=10).deleted == 1
    del acked[b"k000001"]
    kv.Compact(rpc_pb2.CompactionRequest(revision=3), timeout=10)

    # Something else takes the rest of the disk; lskvd dies with it.
    fill(tmpfs / "filler2")
    assert free_bytes(tmpfs) < MIB
    # lskvd reads the free space at most every 10 ms (storage/diskspace.c):
    # a request sent within that window may still be admitted on the old
    # figure (it then waits in apply, never half-applied).
    time.sleep(0.1)
    # Nothing is written into a full disk, not even a delete; lskvd lives on.
    assert (s.data_dir / "space.reserve").exists()
    code, details = rpc_error(kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"k000002"),
                              timeout=10)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)
    assert_all_there(s, acked)
    assert s.alive()
    s.kill()
    t0 = time.time()
    s.start()
    restart_s = time.time() - t0
    log = s.log_text(True)
    assert "no space left on device" in log and "space.reserve" in log, log[-3000:]
    assert alarm_lines(s) == [nospace]
    assert_all_there(s, acked)
    code, details = rpc_error(kv_of(s).Put, rpc_pb2.PutRequest(key=b"x", value=b"y"), timeout=10)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)

    # Space back: the alarm stays until disarmed (as etcd's), then writes work.
    os.unlink(filler)
    os.unlink(tmpfs / "filler2")
    kv = kv_of(s)
    code, details = rpc_error(kv.Put, rpc_pb2.PutRequest(key=b"x", value=b"y"), timeout=10)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)
    r = s.etcdctl("alarm", "disarm")
    assert r.returncode == 0 and r.stdout.strip() == nospace, (r.stdout, r.stderr)
    assert alarm_lines(s) == []
    for i in range(5):
        key, value = b"after%d" % i, os.urandom(VALUE_BYTES)
        kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=30)
        acked[key] = value
    assert status_errors(s) == []
    assert_all_there(s, acked)
    deadline = time.time() + 5  # made again once the reserve is free
    while not (s.data_dir / "space.reserve").exists():
        assert time.time() < deadline, "space.reserve not made again"
        time.sleep(0.1)
    s.stop_cleanly()
    s.start()
    assert_all_there(s, acked)
    assert alarm_lines(s) == []
    print("lskvd on 64 MiB: %d Puts of 64 KiB before NOSPACE; restart on the full disk "
          "after kill -9: %.2f s" % (n_fitted, restart_s))


@lskvd_only
def test_many_writers_at_once_stop_at_nospace(tmpfs, server_factory):
    """32 writers of 1 MiB values at once on the 64 MiB tmpfs: each write
    admitted counts what the others in flight will write (about 3 MiB each:
    raft log, ledger, engine), so the node refuses instead of meeting
    ENOSPC half-way; it lives on, every acknowledged write is there, and it
    restarts."""
    s = server_factory("lskvd", start=False)
    s.data_dir = tmpfs / "data"
    s.start()
    acked, refused, lock = {}, [], threading.Lock()

    def writer(w):
        kv = kv_of(s)
        for i in range(100):
            key, value = b"w%02d-%03d" % (w, i), os.urandom(MIB)
            code, r = rpc_error(kv.Put, rpc_pb2.PutRequest(key=key, value=value), timeout=60)
            with lock:
                if code != grpc.StatusCode.OK:
                    refused.append((code, r))
                    return
                acked[key] = value

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.alive(), s.log_text()[-3000:]
    assert set(refused) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)}
    assert len(acked) >= 3
    assert "fatal" not in s.log_text()
    assert_all_there(s, acked)
    s.stop_cleanly()
    s.start()
    assert_all_there(s, acked)


def test_quota_backend_bytes_as_etcd(server_factory):
    """--quota-backend-bytes raises NOSPACE on both, with the same answers:
    Put, LeaseGrant and Txn-with-put refused, Range, read-only Txn, DeleteRange and
    Compact served, disarm clears it and the next Put over quota raises it
    again."""
    out = {}
    for kind in ("etcd", "lskvd"):
        s = server_factory(kind, extra=["--quota-backend-bytes", str(3 * MIB)])
        kv = kv_of(s)
        acked = {}
        refused = put_until_refused(kv, acked, limit=400)
        nospace = "memberID:%d alarm:NOSPACE" % member_id(s)
        steps = [refused, alarm_lines(s) == [nospace], status_errors(s) == [nospace + " "]]
        for path, body in (("/v3/maintenance/alarm", {"action": "GET"}),
                           ("/v3/kv/put", {"key": "eA==", "value": "eQ=="})):
            r = subprocess.run(["curl", "-sS", "-X", "POST", s.url + path,
                                "-d", json.dumps(body)], capture_output=True, text=True,
                               timeout=20)
            steps.append(r.stdout.replace(str(member_id(s)), "<id>"))
        lease = rpc_pb2_grpc.LeaseStub(grpc.insecure_channel(s.endpoint, [
            ("grpc.use_local_subchannel_pool", 1)]))
        steps.append(rpc_error(lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=60),
                               timeout=10)[:2])
        steps.append(rpc_error(kv.Txn, rpc_pb2.TxnRequest(success=[put_op(b"t")]),
                               timeout=10)[:2])
        steps.append(rpc_error(kv.Txn, rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"zz", target=rpc_pb2.Compare.VERSION, version=1)],
            success=[put_op(b"t")],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"zz"))]),
            timeout=10)[0])
        steps.append(kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_range=rpc_pb2.RangeRequest(key=b"k000000"))]),
            timeout=10).responses[0].response_range.kvs[0].value == acked[b"k000000"])
        steps.append(kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k000000"),
                                    timeout=10).deleted)
        del acked[b"k000000"]
        kv.Compact(rpc_pb2.CompactionRequest(revision=2), timeout=10)
        r = s.etcdctl("alarm", "disarm")
        steps.append((r.returncode, r.stdout.strip() == nospace))
        steps.append(rpc_error(kv.Put, rpc_pb2.PutRequest(key=b"k1", value=b"v" * VALUE_BYTES),
                               timeout=10)[:2])
        steps.append(alarm_lines(s) == [nospace])
        assert_all_there(s, acked)
        out[kind] = steps
    assert out["lskvd"] == out["etcd"]
    assert out["lskvd"][0] == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE)


@pytest.mark.skipif(TARGET == "etcd", reason="the comparison run is already etcd's")
def test_etcd_on_the_same_full_disk(tmpfs, server_factory):
    """What etcd 3.4 does in the run above (for docs/design-changes.md): its
    64 MB WAL file takes the disk, it dies at the first bbolt commit that
    does not fit (no NOSPACE alarm: that guards the quota only); a restart
    on the full disk dies again (printed, not asserted: it varies)."""
    e = server_factory("etcd", start=False)
    e.data_dir = tmpfs / "data"
    acked = {}
    try:
        e.start()
    except RuntimeError:
        pass  # its WAL file and bbolt did not fit: that is the finding too
    else:
        code, _ = put_until_refused(kv_of(e), acked, limit=400)
        assert code != grpc.StatusCode.OK
        e.proc.wait(20)
    assert e.proc.returncode not in (None, 0)
    assert "no space left on device" in e.log_text()
    # The restart: it exits again, or (when the first start already died)
    # serves until its next write that needs the disk.
    try:
        e.start(timeout=20)
        outcome = "serves; a Put then answers %s" % (
            rpc_error(kv_of(e).Put, rpc_pb2.PutRequest(key=b"x", value=b"y" * VALUE_BYTES),
                      timeout=10)[0],)
    except RuntimeError:
        outcome = "exits %s" % e.proc.returncode
        assert "no space left on device" in e.log_text(True)
    print("etcd on 64 MiB: %d Puts of 64 KiB, then it exits; restart on the full disk: %s" % (
        len(acked), outcome))


def test_compaction_and_defrag_make_room_under_a_tiny_quota(server_factory):
    """etcd's e2e TestCtlV3Alarm: a 13-page quota filled by overwriting one
    key, then compact (physical) and defrag give the space back, so after
    alarm disarm a small put fits again and every acknowledged write is
    there. (A defragment that left deleted records on disk kept the engine
    above the quota.)"""
    out = {}
    page = 4096
    for kind in ("etcd", "lskvd"):
        s = server_factory(kind, extra=["--quota-backend-bytes", str(13 * page)])
        steps = [s.etcdctl("put", "1st_test", "a" * 64).returncode]
        last = None
        for i in range(200):
            r = s.etcdctl("put", "2nd_test", "%04d" % i + "b" * (page - 4))
            if r.returncode != 0:
                steps.append("database space exceeded" in r.stderr)
                break
            last = i
        assert last is not None
        steps.append(s.etcdctl("put", "3rd_test", "a" * 64).returncode != 0)
        rev = json.loads(s.etcdctl("endpoint", "status", "-w", "json").stdout)[0][
            "Status"]["header"]["revision"]
        steps.append(s.etcdctl("compact", str(rev), "--physical").returncode)
        steps.append(s.etcdctl("defrag").returncode)
        steps.append(s.etcdctl("alarm", "disarm").returncode)
        steps.append(s.etcdctl("put", "4th_test", "a" * 64).returncode)
        r = s.etcdctl("get", "2nd_test", "--print-value-only")
        steps.append(r.stdout.strip()[:4] == "%04d" % last)
        steps.append(s.etcdctl("alarm", "list").stdout.strip())
        out[kind] = steps
    assert out["lskvd"] == out["etcd"] == [0, True, True, 0, 0, 0, 0, True, ""], out
