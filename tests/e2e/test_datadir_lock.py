"""One lskvd per data dir: a second start on a running server's data dir is
refused at once, naming the holder, and the running server loses nothing."""
import os
import socket
import subprocess
import threading
import time

import grpc

from conftest import LSKVCTL, LSKVD, free_port, lskvd_only, rpc_pb2, rpc_pb2_grpc


def audit(s):
    return subprocess.run([LSKVCTL, "ledger", "audit", str(s.data_dir / "ledger"),
                           "--service-cert", str(s.data_dir / "identity" / "service.pem"),
                           "--ledger-secret", str(s.data_dir / "ledger.secret"),
                           "--no-progress"], capture_output=True, text=True, timeout=120)


class Writer(threading.Thread):
    """Puts fresh keys until stopped; remembers what was acknowledged."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.kv = server.kv()
        self.acked = {}
        self.errors = []
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            k, v = b"lock-%06d" % i, b"value-%d" % i
            try:
                self.kv.Put(rpc_pb2.PutRequest(key=k, value=v), timeout=20)
                self.acked[k] = v
            except grpc.RpcError as e:
                self.errors.append((e.code(), e.details()))
            i += 1


@lskvd_only
def test_second_lskvd_on_a_locked_data_dir_is_refused(lskvd):
    w = Writer(lskvd)
    w.start()
    try:
        pid = lskvd.proc.pid
        lock = lskvd.data_dir / "lock"
        before = os.stat(lock)
        assert before.st_size == 0
        want = "refusing to start: %s: locked by another lskvd (pid %d)" % (lskvd.data_dir, pid)
        for attempt in range(100):
            port, peer = free_port(), free_port()
            url, purl = "http://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % peer
            t0 = time.monotonic()
            r = subprocess.run([LSKVD, "--name", lskvd.name, "--data-dir", str(lskvd.data_dir),
                                "--listen-client-urls", url, "--advertise-client-urls", url,
                                "--listen-peer-urls", purl,
                                "--initial-advertise-peer-urls", purl],
                               capture_output=True, text=True, timeout=30)
            took = time.monotonic() - t0
            assert r.returncode != 0, "attempt %d: second lskvd exited 0" % attempt
            assert want in r.stderr + r.stdout, "attempt %d: %s" % (attempt, r.stderr[-2000:])
            assert took < 10, "attempt %d took %.1f s" % (attempt, took)
            assert "ready to serve" not in r.stderr + r.stdout
            assert lskvd.alive(), "the running lskvd died at attempt %d" % attempt
            # It answered nobody (never listened) and wrote nothing to the lock.
            with socket.socket() as c:
                assert c.connect_ex(("127.0.0.1", port)) != 0
            after = os.stat(lock)
            assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
                before.st_ino, 0, before.st_mtime_ns)
    finally:
        w.halt.set()
        w.join(60)
    assert not w.errors, "writes failed during the attempts: %s" % w.errors[:5]
    assert len(w.acked) > 0
    kv = lskvd.kv()
    for k, v in w.acked.items():
        r = kv.Range(rpc_pb2.RangeRequest(key=k), timeout=20)
        assert [(x.key, x.value) for x in r.kvs] == [(k, v)], k
    lskvd.stop_cleanly()
    a = audit(lskvd)
    assert a.returncode == 0, a.stdout + a.stderr
    # A restart on the data dir (the lock released by the exit) serves it all.
    lskvd.start()
    # A channel of its own: grpc's shared subchannel would be the dead one.
    kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(
        lskvd.endpoint, [("grpc.use_local_subchannel_pool", 1)]))
    r = kv.Range(rpc_pb2.RangeRequest(key=b"lock-", range_end=b"lock."), timeout=20)
    assert {x.key: x.value for x in r.kvs} == w.acked
