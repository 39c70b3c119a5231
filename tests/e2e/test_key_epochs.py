"""Data key epochs (issue 7): with --key-epoch-size 3 every 3 raft indexes
and every 3 revisions are sealed under a new derived key. After 40 writes
(over 10 epochs of both) and snapshots, a restart re-opens the raft log and
snapshots of every epoch, every revision of every key reads back as etcd
answers it, and the ledger audits clean."""
import re
import subprocess

from etcd3.etcdrpc import rpc_pb2

from conftest import LSKVCTL, Server


def writes(server):
    kv = server.kv()
    for i in range(40):
        kv.Put(rpc_pb2.PutRequest(key=b"e/%d" % (i % 7), value=b"value-%d" % i))
        if i % 9 == 8:
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"e/%d" % (i % 5)))


def history(server):
    """Every key as of every revision, as etcd's Range answers it."""
    kv = server.kv()
    last = kv.Range(rpc_pb2.RangeRequest(key=b"e/", range_end=b"e0")).header.revision
    out = []
    for rev in range(1, last + 1):
        r = kv.Range(rpc_pb2.RangeRequest(key=b"e/", range_end=b"e0", revision=rev))
        out.append([(x.key, x.value, x.create_revision, x.mod_revision, x.version)
                    for x in r.kvs])
    return last, out


def test_ten_epochs_read_back_after_restart_and_audit(tmp_path, etcd):
    lskvd = Server("lskvd", tmp_path / "lskvd",
                   extra=["--key-epoch-size", "3", "--snapshot-count", "8",
                          "--sig-tx-interval", "4"])
    lskvd.start()
    try:
        for s in (etcd, lskvd):
            writes(s)
        want = history(etcd)
        assert want[0] >= 30  # revisions span 10 record epochs of 3
        assert history(lskvd) == want
        lskvd.restart()
        assert history(lskvd) == want
        if not lskvd.is_etcd:
            lskvd.stop_cleanly()
            epochs = re.findall(r"record keys: last epoch (\d+)", lskvd.log_text())
            assert epochs and max(map(int, epochs)) >= 10, lskvd.log_text()[-2000:]
            d = lskvd.data_dir
            r = subprocess.run([LSKVCTL, "ledger", "audit", str(d / "ledger"),
                                "--service-cert", str(d / "identity" / "service.pem"),
                                "--ledger-secret", str(d / "ledger.secret"), "--no-progress"],
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
            assert len(list((d / "raft").glob("snapshot-*"))) >= 1
    finally:
        lskvd.kill()
