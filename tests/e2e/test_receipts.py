"""The ledger inside the running lskvd: receipts for real writes (lskvctl and
the independent Python verifier accept them, tampering is caught), TxStatus,
`ledger audit` of the server's own ledger (also after kill -9), nothing in
the clear anywhere in the data dir, and a >=100k-entry audit."""
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest
from etcd3.etcdrpc import kv_pb2

from conftest import grpc_channel, lskvd_only, rpc_pb2, rpc_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import receipt_check  # noqa: E402
from test_ledger_offline import LSKVCTL, chunks, frames  # noqa: E402

pytestmark = [lskvd_only,
              pytest.mark.skipif(not os.path.exists(LSKVCTL), reason="lskvctl not built")]


def ctl(*args, timeout=120):
    return subprocess.run([LSKVCTL, *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout)


def service_cert(server):
    return str(server.data_dir / "identity" / "service.pem")


def put_json(server, key, value):
    r = server.etcdctl("put", key, value, "-w", "json")
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)["header"]
    return int(h["revision"]), int(h["raft_term"])


def varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def get_receipt(server, rev, term, out):
    return ctl("receipt", "get", rev, "--term", term, "--endpoints", server.url, "--out", out)


def audit(server, secret=True):
    args = ["ledger", "audit", server.data_dir / "ledger", "--service-cert", service_cert(server)]
    if secret:
        args += ["--ledger-secret", server.data_dir / "ledger.secret"]
    return ctl(*args)


def write_claims(tmp_path, name, request, response):
    """Binary request and response files (response header cleared, as claims are)."""
    response = type(response).FromString(response.SerializeToString())
    response.ClearField("header")
    rq, rs = tmp_path / (name + ".req"), tmp_path / (name + ".resp")
    rq.write_bytes(request.SerializeToString())
    rs.write_bytes(response.SerializeToString())
    return str(rq), str(rs)


def verify_both(receipt, cert, rq=None, rs=None, kind="put"):
    """(lskvctl result, python verifier result) for one receipt."""
    extra = ["--request", rq, "--response", rs, "--kind", kind] if rq else []
    a = ctl("receipt", "verify", receipt, "--service-cert", cert, *extra)
    b = subprocess.run([sys.executable, os.path.join(HERE, "receipt_check.py"), receipt,
                        "--service-cert", cert, *extra], capture_output=True, text=True,
                       timeout=60)
    return a, b


def test_receipts_for_etcdctl_puts_verify_and_are_ready_fast(lskvd, tmp_path):
    cert = service_cert(lskvd)
    for i in range(8):
        key, value = "rk-%d-%s" % (i, uuid.uuid4().hex[:6]), "rv-%d-%s" % (i, uuid.uuid4().hex)
        rev, term = put_json(lskvd, key, value)
        t0 = time.monotonic()
        out = str(tmp_path / ("r%d.json" % rev))
        r = get_receipt(lskvd, rev, term, out)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert elapsed < 0.5, "receipt for revision %d ready after %.3f s" % (rev, elapsed)
        receipt = json.load(open(out))
        assert receipt["tx_receipt"]["leaf_components"]["commit_evidence"].startswith(
            "ce:%d." % term)
        rq, rs = write_claims(tmp_path, "p%d" % rev,
                              rpc_pb2.PutRequest(key=key.encode(), value=value.encode()),
                              rpc_pb2.PutResponse())
        a, b = verify_both(out, cert, rq, rs)
        assert a.returncode == 0 and "claims match" in a.stdout, (a.stdout, a.stderr)
        assert b.returncode == 0, (b.stdout, b.stderr)


def test_receipts_for_delete_and_txn_over_grpc(lskvd, tmp_path):
    kv = lskvd.kv()
    cert = service_cert(lskvd)
    kv.Put(rpc_pb2.PutRequest(key=b"d1", value=b"x"))
    cases = []
    dreq = rpc_pb2.DeleteRangeRequest(key=b"d1", prev_kv=True)
    cases.append(("delete_range", dreq, kv.DeleteRange(dreq)))
    treq = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"t1", target=rpc_pb2.Compare.VERSION,
                                 result=rpc_pb2.Compare.EQUAL, version=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t1", value=b"y"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"t1"))])
    cases.append(("txn", treq, kv.Txn(treq)))
    for kind, req, resp in cases:
        rev, term = resp.header.revision, resp.header.raft_term
        out = str(tmp_path / (kind + ".json"))
        r = get_receipt(lskvd, rev, term, out)
        assert r.returncode == 0, r.stderr
        rq, rs = write_claims(tmp_path, kind, req, resp)
        a, b = verify_both(out, cert, rq, rs, kind)
        assert a.returncode == 0 and "claims match" in a.stdout, (kind, a.stdout, a.stderr)
        assert b.returncode == 0, (kind, b.stdout, b.stderr)


def test_receipts_for_lease_grant_and_revoke(lskvd, tmp_path):
    """Lease commands are ledger entries with receipts: a grant and a keyless
    revoke make no revision (as in etcd), so they are asked for by the
    revision in their header and their claims."""
    lease = rpc_pb2_grpc.LeaseStub(lskvd.channel())
    kv = lskvd.kv()
    cert = service_cert(lskvd)
    cases = []
    g1 = rpc_pb2.LeaseGrantRequest(ID=0x51, TTL=60)
    cases.append(("lease_grant", g1, lease.LeaseGrant(g1)))
    kv.Put(rpc_pb2.PutRequest(key=b"lease-rk", value=b"v", lease=0x51))
    g2 = rpc_pb2.LeaseGrantRequest(TTL=30)  # server-chosen ID
    cases.append(("lease_grant", g2, lease.LeaseGrant(g2)))
    r1 = rpc_pb2.LeaseRevokeRequest(ID=0x51)  # deletes a key: a revision of its own
    cases.append(("lease_revoke", r1, lease.LeaseRevoke(r1)))
    r2 = rpc_pb2.LeaseRevokeRequest(ID=cases[1][2].ID)  # no key: shares a revision
    cases.append(("lease_revoke", r2, lease.LeaseRevoke(r2)))
    assert cases[2][2].header.revision == cases[1][2].header.revision + 1
    assert cases[3][2].header.revision == cases[2][2].header.revision
    # A grant with ID 0 is applied (and claimed) with the ID the server chose.
    cases[1] = ("lease_grant", rpc_pb2.LeaseGrantRequest(ID=cases[1][2].ID, TTL=30), cases[1][2])
    for i, (kind, req, resp) in enumerate(cases):
        rev, term = resp.header.revision, resp.header.raft_term
        rq, rs = write_claims(tmp_path, "%s%d" % (kind, i), req, resp)
        out = str(tmp_path / ("%s%d.json" % (kind, i)))
        r = ctl("receipt", "get", rev, "--term", term, "--endpoints", lskvd.url, "--out", out,
                "--request", rq, "--response", rs, "--kind", kind)
        assert r.returncode == 0, (kind, r.stderr)
        a, b = verify_both(out, cert, rq, rs, kind)
        assert a.returncode == 0 and "claims match" in a.stdout, (kind, a.stdout, a.stderr)
        assert b.returncode == 0, (kind, b.stdout, b.stderr)
        # The receipt is this command's: the other kind's claims do not match.
        other = "lease_revoke" if kind == "lease_grant" else "lease_grant"
        a, b = verify_both(out, cert, rq, rs, other)
        assert a.returncode != 0 and b.returncode != 0, (kind, a.stdout, b.stdout)
    # A response the server did not give (another TTL) has no receipt.
    forged = rpc_pb2.LeaseGrantResponse()
    forged.CopyFrom(cases[0][2])
    forged.TTL += 1
    rq, rs = write_claims(tmp_path, "forged", cases[0][1], forged)
    r = ctl("receipt", "get", forged.header.revision, "--endpoints", lskvd.url, "--timeout", "2",
            "--request", rq, "--response", rs, "--kind", "lease_grant")
    assert r.returncode == 1 and "status 5" in r.stderr and "with those claims" in r.stderr, \
        r.stderr
    # A digest that is not 64 hex digits is refused as such.
    with pytest.raises(grpc.RpcError) as e:
        lskvd.channel().unary_unary("/etcdserverpb.Receipt/GetReceipt")(
            b"\x08" + varint(cases[0][2].header.revision) + b"\x1a\x03xyz", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "64 hex digits" in e.value.details()


def test_tampered_receipt_request_or_response_fails_with_a_reason(lskvd, tmp_path):
    cert = service_cert(lskvd)
    rev, term = put_json(lskvd, "tk", "tv-original")
    out = tmp_path / "r.json"
    assert get_receipt(lskvd, rev, term, out).returncode == 0
    good = out.read_text()
    rq, rs = write_claims(tmp_path, "t", rpc_pb2.PutRequest(key=b"tk", value=b"tv-original"),
                          rpc_pb2.PutResponse())
    assert all(r.returncode == 0 for r in verify_both(str(out), cert, rq, rs))

    receipt = json.loads(good)
    lc = receipt["tx_receipt"]["leaf_components"]

    def flip_hex(s, i=5):
        return s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1:]

    mutants = []
    m = json.loads(good)
    m["tx_receipt"]["leaf_components"]["write_set_digest"] = flip_hex(lc["write_set_digest"])
    mutants.append(("write_set_digest", m))
    m = json.loads(good)
    m["tx_receipt"]["leaf_components"]["claims_digest"] = flip_hex(lc["claims_digest"])
    mutants.append(("claims_digest", m))
    m = json.loads(good)
    ce = lc["commit_evidence"]
    m["tx_receipt"]["leaf_components"]["commit_evidence"] = ce[:-1] + (
        "0" if ce[-1] != "0" else "1")
    mutants.append(("commit_evidence", m))
    if receipt["tx_receipt"].get("proof"):
        m = json.loads(good)
        p = m["tx_receipt"]["proof"][0]
        side = "left" if "left" in p else "right"
        p[side] = flip_hex(p[side])
        mutants.append(("proof", m))
    import base64
    m = json.loads(good)
    sig = bytearray(base64.b64decode(m["signature"]))
    sig[-3] ^= 0x01
    m["signature"] = base64.b64encode(bytes(sig)).decode()
    mutants.append(("signature", m))
    m = json.loads(good)
    m["tx_receipt"]["leaf_index"] = str(int(receipt["tx_receipt"]["leaf_index"]) + 1)
    mutants.append(("leaf_index", m))

    for name, m in mutants:
        path = tmp_path / ("bad-%s.json" % name)
        path.write_text(json.dumps(m))
        a, b = verify_both(str(path), cert)
        assert a.returncode == 1 and "FAILED" in a.stderr, (name, a.stdout, a.stderr)
        assert re.search(r"FAILED: \S", a.stderr), a.stderr
        assert b.returncode == 1, (name, b.stdout, b.stderr)

    # one byte of the request, or of the response
    bad_rq = tmp_path / "bad.req"
    bad_rq.write_bytes(rpc_pb2.PutRequest(key=b"tk", value=b"tv-originaL").SerializeToString())
    bad_rs = tmp_path / "bad.resp"
    bad_rs.write_bytes(rpc_pb2.PutResponse(prev_kv=kv_pb2.KeyValue(key=b"tk"))
                       .SerializeToString())
    for rqx, rsx in ((str(bad_rq), rs), (rq, str(bad_rs))):
        a, b = verify_both(str(out), cert, rqx, rsx)
        assert a.returncode == 1 and "claims" in a.stderr, (a.stdout, a.stderr)
        assert b.returncode == 1, (b.stdout, b.stderr)


def tx_status(server, rev, term=None):
    args = ["tx-status", rev, "--endpoints", server.url]
    if term is not None:
        args += ["--term", term]
    r = ctl(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_tx_status(lskvd):
    rev, term = put_json(lskvd, "sk", "sv")
    assert tx_status(lskvd, rev, term) == "Committed"
    assert tx_status(lskvd, rev) == "Committed"
    assert tx_status(lskvd, rev, term + 1) == "Invalid"
    assert tx_status(lskvd, rev + 1000, term) == "Unknown"
    assert tx_status(lskvd, 1) == "Unknown"  # the initial revision: no write made it


def test_receipt_of_unknown_revision_is_not_found(lskvd):
    rev, term = put_json(lskvd, "nk", "nv")
    r = ctl("receipt", "get", rev + 50, "--endpoints", lskvd.url, "--timeout", "1")
    assert r.returncode == 1 and "status 5" in r.stderr, r.stderr
    r = ctl("receipt", "get", rev, "--term", term + 3, "--endpoints", lskvd.url)
    assert r.returncode == 1 and "status 5" in r.stderr, r.stderr


def test_not_ready_answer_is_unavailable_with_a_retry_hint(server_factory):
    # Signatures at most every 10 s (or 5000 entries): the first put is
    # signed at once, the next one only 10 s later.
    s = server_factory("lskvd", extra=["--sig-ms-interval", "10000"])
    rev, term = put_json(s, "uk0", "uv")
    assert get_receipt(s, rev, term, s.workdir / "first.json").returncode == 0
    rev, term = put_json(s, "uk", "uv")
    r = ctl("receipt", "get", rev, "--term", term, "--endpoints", s.url, "--timeout", "0.3")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "not ready" in r.stderr and "retry-after-ms" in r.stderr, r.stderr
    assert tx_status(s, rev, term) == "Committed"  # committed, just not signed

    # gRPC: the hint is also a trailer, retry-after-ms: N.
    request = bytes([0x08]) + varint(rev) + bytes([0x10]) + varint(term)
    with grpc_channel(s) as ch:
        call = ch.unary_unary("/etcdserverpb.Receipt/GetReceipt")
        with pytest.raises(grpc.RpcError) as e:
            call(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    trailers = dict(e.value.trailing_metadata())
    assert int(trailers["retry-after-ms"]) > 0, trailers

    # JSON, HTTP/1.1 and HTTP/2: 202 with Retry-After in whole seconds (>= 1).
    body = json.dumps({"revision": str(rev), "raft_term": str(term)})
    for http in ("--http1.1", "--http2-prior-knowledge"):
        out = subprocess.run(["curl", "-sS", "-i", http, "-X", "POST",
                              s.url + "/v3/receipt/get_receipt", "-d", body],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        head, _, payload = out.stdout.partition("\n\n")  # text mode: \r\n read as \n
        assert re.match(r"HTTP/[12.]+ 202", head), out.stdout
        m = re.search(r"(?im)^retry-after: (\d+)$", head)
        assert m and int(m.group(1)) >= 1, head
        body_json = json.JSONDecoder().raw_decode(payload)[0]  # curl -i adds the trailer
        assert body_json["code"] == 14, payload


def test_signature_every_entry(server_factory, tmp_path):
    s = server_factory("lskvd", extra=["--sig-tx-interval", "1"])
    revs = [put_json(s, "e%d" % i, "v%d" % i) for i in range(20)]
    for rev, term in revs:
        out = tmp_path / ("e%d.json" % rev)
        assert get_receipt(s, rev, term, out).returncode == 0
        assert verify_both(str(out), service_cert(s))[0].returncode == 0
    s.stop_cleanly()
    r = audit(s)
    assert r.returncode == 0, r.stderr
    sigs = int(re.search(r"(\d+) signatures", r.stdout).group(1))
    assert sigs >= 10, r.stdout  # about one per sequential put


def ledger_kv_revisions(server):
    r = ctl("ledger", "show", server.data_dir / "ledger")
    assert r.returncode == 0, r.stderr
    return {int(m.group(1)) for m in re.finditer(r"rev=(\d+) type=kv", r.stdout)}


def test_audit_of_the_servers_ledger_and_restart(server_factory):
    s = server_factory("lskvd", extra=["--ledger-chunk-bytes", "8192",
                                       "--snapshot-count", "50"])
    kv = s.kv()
    revs = []
    for i in range(300):
        revs.append(kv.Put(rpc_pb2.PutRequest(key=b"a%d" % (i % 37), value=b"v%d" % i))
                    .header.revision)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"a1"))
    kv.Compact(rpc_pb2.CompactionRequest(revision=revs[100]))
    time.sleep(0.3)
    s.stop_cleanly()
    r = audit(s)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(chunks(str(s.data_dir / "ledger"))) >= 3
    assert set(revs) <= ledger_kv_revisions(s)
    # restart: replayed entries are checked, not appended twice
    s.start()
    assert "replayed entries checked" in s.log_text(True)
    rev, term = put_json(s, "after", "restart")
    assert get_receipt(s, rev, term, s.workdir / "after.json").returncode == 0
    assert get_receipt(s, revs[5], 0, s.workdir / "old.json").returncode == 0
    assert verify_both(str(s.workdir / "old.json"), service_cert(s))[0].returncode == 0
    s.stop_cleanly()
    r = audit(s)
    assert r.returncode == 0, r.stdout + r.stderr
    # tampering with the real ledger is caught, naming chunk and offset
    d = str(s.data_dir / "ledger")
    name = chunks(d)[1]
    data = bytearray(open(os.path.join(d, name), "rb").read())
    off, n = frames(data)[2]
    data[off + 30] ^= 0x40
    open(os.path.join(d, name), "wb").write(data)
    r = audit(s)
    assert r.returncode == 1
    assert re.search(r"FAILED: chunk %s, offset %d" % (re.escape(name), off), r.stderr), r.stderr


def test_kill_9_during_writes_keeps_every_acknowledged_write(server_factory):
    s = server_factory("lskvd", extra=["--snapshot-count", "64", "--ledger-chunk-bytes", "16384"])
    acked, stop = [], threading.Event()

    def writer(tid):
        kv = s.kv()
        i = 0
        while not stop.is_set():
            try:
                resp = kv.Put(rpc_pb2.PutRequest(key=b"k%d-%d" % (tid, i), value=b"v%d" % i),
                              timeout=5)
            except Exception:
                return
            acked.append((resp.header.revision, resp.header.raft_term))
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    s.kill()  # SIGKILL while the writers are busy
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 50
    s.start()
    s.stop_cleanly()
    r = audit(s)
    assert r.returncode == 0, r.stdout + r.stderr
    in_ledger = ledger_kv_revisions(s)
    missing = sorted(rev for rev, _ in acked if rev not in in_ledger)
    assert not missing, "acknowledged revisions missing from the ledger: %s" % missing[:20]
    s.start()
    last_rev, last_term = max(acked)
    assert tx_status(s, last_rev, last_term) == "Committed"
    assert get_receipt(s, last_rev, last_term, s.workdir / "last.json").returncode == 0


def test_no_key_or_value_in_the_clear_anywhere_in_the_data_dir(server_factory):
    s = server_factory("lskvd", extra=["--snapshot-count", "20"])
    key = ("needle-key-" + uuid.uuid4().hex).encode()
    value = ("needle-value-" + uuid.uuid4().hex).encode()
    kv = s.kv()
    kv.Put(rpc_pb2.PutRequest(key=key, value=value))
    for i in range(60):  # enough for raft snapshots
        kv.Put(rpc_pb2.PutRequest(key=key, value=value + b"-%d" % i))
    kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=key, value=value))]))
    time.sleep(0.3)
    s.stop_cleanly()
    found, kinds = [], set()
    for root, _, files in os.walk(s.data_dir):
        for f in files:
            p = os.path.join(root, f)
            data = open(p, "rb").read()
            kinds.add(os.path.relpath(root, s.data_dir).split(os.sep)[0])
            if key in data or value in data or key[:12] in data or value[:14] in data:
                found.append(p)
    assert not found, "key or value in the clear in %s" % found
    assert {"raft", "engine", "ledger"} <= kinds, kinds
    assert any("snapshot" in f for f in os.listdir(s.data_dir / "raft")), \
        os.listdir(s.data_dir / "raft")


@pytest.mark.slow
def test_big_ledger_audit_reports_throughput(tmp_path):
    d = tmp_path / "big"
    r = ctl("ledger", "synth", d, "--entries", "100000", "--sig-every", "1000",
            "--chunk-bytes", "524288", timeout=600)
    assert r.returncode == 0, r.stderr
    ledger = str(d / "ledger")
    assert len(chunks(ledger)) >= 20, len(chunks(ledger))
    t0 = time.monotonic()
    r = ctl("ledger", "audit", ledger, "--service-cert", d / "identity" / "service.pem",
            "--ledger-secret", d / "ledger.secret", "--no-progress", timeout=600)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) entries/s", r.stdout)
    assert m and int(m.group(1)) > 0, r.stdout
    n = int(re.search(r"(\d+) entries,", r.stdout).group(1))
    assert n >= 100000, r.stdout
    print("\nbig ledger audit: %d entries in %d chunks, %.2f s, %s entries/s" % (
        n, len(chunks(ledger)), elapsed, m.group(1)))


def test_receipt_and_tx_status_at_the_json_paths(lskvd, tmp_path):
    import urllib.error
    import urllib.request

    def post(path, body):
        req = urllib.request.Request(lskvd.url + path, data=json.dumps(body).encode(),
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    rev, term = put_json(lskvd, "jk", "jv")
    st, body = post("/v3/maintenance/tx_status", {"revision": str(rev), "raft_term": str(term)})
    assert st == 200 and body["status"] == "Committed", body
    assert get_receipt(lskvd, rev, term, tmp_path / "grpc.json").returncode == 0
    st, body = post("/v3/receipt/get_receipt", {"revision": str(rev), "raft_term": str(term)})
    assert st == 200 and "tx_receipt" in body["receipt"], body
    path = tmp_path / "json.json"
    path.write_text(json.dumps(body))
    a, b = verify_both(str(path), service_cert(lskvd))
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stdout, b.stderr)
    st, body = post("/v3/receipt/get_receipt", {"revision": str(rev + 100)})
    assert st == 404 and body["code"] == 5, body


def test_anchor_catches_a_rolled_back_data_dir(server_factory, tmp_path):
    """A client keeps a signed root (anchor); the operator copies back an
    older data dir, which is consistent by itself: receipts and the audit
    checked against the anchor show the rollback."""
    import shutil
    s = server_factory("lskvd")
    for i in range(10):
        put_json(s, "old%d" % i, "v")
    rev_old, term_old = put_json(s, "old", "last")
    assert get_receipt(s, rev_old, term_old, tmp_path / "warm.json").returncode == 0
    s.stop_cleanly()
    backup = tmp_path / "backup"
    shutil.copytree(s.data_dir, backup)
    s.start()
    for i in range(20):
        put_json(s, "new%d" % i, "v")
    rev, term = put_json(s, "new", "last")
    assert get_receipt(s, rev, term, tmp_path / "r_new.json").returncode == 0
    anchor = tmp_path / "anchor.json"
    r = ctl("anchor", "get", "--endpoints", s.url, "--out", anchor)
    assert r.returncode == 0, r.stderr
    a = json.loads(anchor.read_text())
    assert int(a["tree_size"]) > 0 and len(a["root"]) == 64
    # receipts from before and after the anchor both extend it
    for rv_, tm, name in ((rev, term, "new"), (rev_old, term_old, "old")):
        out = tmp_path / ("anchored_%s.json" % name)
        r = ctl("receipt", "get", rv_, "--term", tm, "--endpoints", s.url, "--anchor", anchor,
                "--out", out)
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text())["anchor_size"] == a["tree_size"]
        r = ctl("receipt", "verify", out, "--service-cert", service_cert(s), "--anchor", anchor)
        assert r.returncode == 0 and "consistent with the anchor" in r.stdout, r.stderr
        # the independent verifier, from docs/ledger-format.md section 8
        cert = open(service_cert(s), "rb").read()
        good = json.loads(out.read_text())
        receipt_check.verify(good, cert, anchor=a)
        bad = json.loads(json.dumps(good))
        if bad["anchor_proof"]:
            p0 = bad["anchor_proof"][0]
            bad["anchor_proof"][0] = ("0" if p0[0] != "0" else "1") + p0[1:]
            with pytest.raises(receipt_check.ReceiptError, match="one history"):
                receipt_check.verify(bad, cert, anchor=a)
    # without the proof embedded, --anchor cannot vouch for it
    r = ctl("receipt", "verify", tmp_path / "r_new.json", "--service-cert", service_cert(s),
            "--anchor", anchor)
    assert r.returncode != 0 and "consistency proof" in r.stderr, r.stderr
    s.stop_cleanly()
    r = ctl("ledger", "audit", s.data_dir / "ledger", "--service-cert", service_cert(s),
            "--ledger-secret", s.data_dir / "ledger.secret", "--anchor", anchor, "--no-progress")
    assert r.returncode == 0 and "anchor OK" in r.stdout, r.stdout + r.stderr
    # roll the whole data dir back: lskvd starts (it cannot tell alone) ...
    shutil.rmtree(s.data_dir)
    shutil.copytree(backup, s.data_dir)
    s.start()
    r = ctl("receipt", "get", rev_old, "--term", term_old, "--endpoints", s.url, "--anchor",
            anchor, "--out", tmp_path / "rolled.json")
    assert r.returncode == 1, (r.stdout, r.stderr)  # the server cannot prove the anchor
    # ... and diverges from there: a receipt it signs now does not extend the anchor
    for i in range(40):
        put_json(s, "fork%d" % i, "x")
    rev_f, term_f = put_json(s, "fork", "last")
    r = ctl("receipt", "get", rev_f, "--term", term_f, "--endpoints", s.url, "--anchor",
            anchor, "--out", tmp_path / "fork.json")
    if r.returncode == 0:  # the forked ledger happened to sign at the anchor's size
        with pytest.raises(receipt_check.ReceiptError):
            receipt_check.verify(json.loads((tmp_path / "fork.json").read_text()),
                                 open(service_cert(s), "rb").read(), anchor=a)
        r = ctl("receipt", "verify", tmp_path / "fork.json", "--service-cert", service_cert(s),
                "--anchor", anchor)
    assert r.returncode == 1, (r.stdout, r.stderr)
    s.stop_cleanly()
    r = ctl("ledger", "audit", s.data_dir / "ledger", "--service-cert", service_cert(s),
            "--anchor", anchor, "--no-progress")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"rolled back|differs from the anchor", r.stderr), r.stderr


def test_consistency_proof_at_the_json_path(lskvd):
    import urllib.request
    for i in range(5):
        put_json(lskvd, "c%d" % i, "v")
    time.sleep(0.3)
    req = urllib.request.Request(lskvd.url + "/v3/receipt/get_consistency_proof",
                                 data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    to = body["to"]
    assert int(to["tree_size"]) > 0 and len(to["root"]) == 64 and "proof" not in body or \
        body["proof"] == []
    n = int(to["tree_size"])
    req = urllib.request.Request(lskvd.url + "/v3/receipt/get_consistency_proof",
                                 data=json.dumps({"from_size": str(n), "to_size": str(n)}).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    assert body["from"]["root"] == body["to"]["root"] == to["root"]


def test_tampered_old_chunk_refuses_start_naming_the_file(server_factory):
    """The whole ledger is verified before anything is served: a byte
    flipped in an old sealed chunk (checksum fixed up, so only the AEAD and
    the tree notice) stops lskvd at start, naming the chunk file."""
    from test_ledger_offline import refresh_crc, entry_type
    s = server_factory("lskvd", extra=["--ledger-chunk-bytes", "4096"])
    for i in range(150):
        put_json(s, "t%d" % (i % 10), "v%d" % i)
    time.sleep(0.3)
    s.stop_cleanly()
    d = s.data_dir / "ledger"
    names = chunks(str(d))
    sealed = [n for n in names if n.endswith(".committed")]
    assert len(sealed) >= 3, names
    s.start()  # untouched: starts, and says it verified the ledger
    assert "verifying the ledger" in s.log_text(True)
    s.stop_cleanly()
    name = sealed[1]
    path = d / name
    data = bytearray(path.read_bytes())
    off, n = next((o, n) for o, n in frames(data) if entry_type(data, o) == 1)
    data[off + n - 10] ^= 0x01  # inside the sealed private part
    refresh_crc(data, off, n)
    path.write_bytes(data)
    with pytest.raises(RuntimeError):
        s.start(timeout=30)
    log = s.log_text(True)
    assert re.search(r"%s: offset %d, txid \d+\.\d+: private part" % (re.escape(str(path)), off),
                     log), log[-2000:]
