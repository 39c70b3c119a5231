"""Offline ledger checks: a synthetic ledger (lskvctl ledger synth, which
drives the real ledger library) is verified by the independent Python
receipt verifier and by `lskvctl ledger audit`; then tampered copies must
fail the audit, naming the chunk and byte offset."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import receipt_check  # noqa: E402


from conftest import LSKVCTL  # noqa: E402
pytestmark = pytest.mark.skipif(not os.path.exists(LSKVCTL), reason="lskvctl not built")


def run(*args, check=None):
    p = subprocess.run([LSKVCTL, *args], capture_output=True, text=True, timeout=120)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("ledger")
    d, r = str(base / "node"), str(base / "receipts")
    run("ledger", "synth", d, "--entries", "400", "--sig-every", "13", "--chunk-bytes", "8192",
        "--receipts", r, check=0)
    return {"dir": d, "ledger": os.path.join(d, "ledger"), "receipts": r,
            "cert": os.path.join(d, "identity", "service.pem"),
            "secret": os.path.join(d, "ledger.secret")}


def chunks(ledger_dir):
    names = [n for n in os.listdir(ledger_dir) if n.startswith("ledger_")]
    return sorted(names, key=lambda n: int(re.match(r"ledger_(\d+)", n).group(1)))


# --- a little of docs/ledger-format.md, independently ------------------------

def crc32c(b):
    crc = 0xFFFFFFFF
    for c in b:
        crc ^= c
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def frames(data):
    """(offset, length) of each frame after the chunk header."""
    first = struct.unpack(">Q", data[12:20])[0]
    off = 24 + 32 * bin(first).count("1") + 4
    out = []
    while off < len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        out.append((off, 4 + n))
        off += 4 + n
    return out


def refresh_crc(data, off, length):
    body = bytes(data[off + 4:off + length - 4])
    data[off + length - 4:off + length] = struct.pack(">I", crc32c(body))


def entry_type(data, off):
    return data[off + 5]


def audit(synth_info, ledger_dir, secret=True):
    args = ["ledger", "audit", ledger_dir, "--service-cert", synth_info["cert"], "--no-progress"]
    if secret:
        args += ["--ledger-secret", synth_info["secret"]]
    return run(*args)


def tampered(synth_info, tmp_path):
    d = str(tmp_path / "copy")
    shutil.copytree(synth_info["ledger"], d)
    return d


# --- receipts -------------------------------------------------------------------

def test_every_receipt_verifies_independently(synth):
    cert = open(synth["cert"], "rb").read()
    files = sorted(f for f in os.listdir(synth["receipts"]) if f.startswith("receipt_"))
    assert len(files) == 400
    roots = set()
    for f in files:
        rev = f[len("receipt_"):-len(".json")]
        req = open(os.path.join(synth["receipts"], f"request_{rev}.bin"), "rb").read()
        resp = open(os.path.join(synth["receipts"], f"response_{rev}.bin"), "rb").read()
        rc = json.load(open(os.path.join(synth["receipts"], f)))
        roots.add(receipt_check.verify(rc, cert, receipt_check.claims_digest(req, resp)))
    assert len(roots) > 20  # many signatures, not one


def test_receipt_tampering_is_caught_by_both_verifiers(synth, tmp_path):
    cert = open(synth["cert"], "rb").read()
    path = os.path.join(synth["receipts"], "receipt_200.json")
    good = json.load(open(path))
    req = open(os.path.join(synth["receipts"], "request_200.bin"), "rb").read()
    resp = open(os.path.join(synth["receipts"], "response_200.bin"), "rb").read()
    other_req = open(os.path.join(synth["receipts"], "request_201.bin"), "rb").read()
    receipt_check.verify(good, cert, receipt_check.claims_digest(req, resp))
    run("receipt", "verify", path, "--service-cert", synth["cert"],
        "--request", os.path.join(synth["receipts"], "request_200.bin"),
        "--response", os.path.join(synth["receipts"], "response_200.bin"), check=0)

    def mutants():
        m = json.loads(json.dumps(good))
        e = m["tx_receipt"]["proof"][0]
        k = "left" if "left" in e else "right"
        e[k] = ("0" if e[k][0] != "0" else "1") + e[k][1:]
        yield "proof hash", m
        m = json.loads(json.dumps(good))
        m["tx_receipt"]["leaf_index"] = str(int(m["tx_receipt"]["leaf_index"]) + 1)
        yield "leaf index", m
        m = json.loads(json.dumps(good))
        m["tx_receipt"]["leaf_components"]["commit_evidence"] += "0"
        yield "commit evidence", m
        m = json.loads(json.dumps(good))
        e = m["tx_receipt"]["proof"][0]
        k, o = ("left", "right") if "left" in e else ("right", "left")
        e[o] = e.pop(k)
        yield "proof side", m
        m = json.loads(json.dumps(good))
        m["tx_receipt"]["proof"].pop()
        yield "short proof", m

    for what, m in mutants():
        with pytest.raises(receipt_check.ReceiptError):
            receipt_check.verify(m, cert)
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(m))
        r = run("receipt", "verify", str(p), "--service-cert", synth["cert"])
        assert r.returncode == 1, (what, r.stdout, r.stderr)
        assert "FAILED" in r.stderr
    with pytest.raises(receipt_check.ReceiptError, match="claims"):
        receipt_check.verify(good, cert, receipt_check.claims_digest(other_req, resp))
    # a service certificate that did not endorse the node
    other = tmp_path / "other"
    run("ledger", "synth", str(other), "--entries", "1", check=0)
    other_cert = str(other / "identity" / "service.pem")
    with pytest.raises(receipt_check.ReceiptError, match="issued|signed"):
        receipt_check.verify(good, open(other_cert, "rb").read())
    assert run("receipt", "verify", path, "--service-cert", other_cert).returncode == 1


def test_receipt_relabelled_to_another_tree_size_fails(synth, tmp_path):
    """The proof's left/right pattern alone cannot bind the size (leaf 0 of 3
    and of 4 share it); the signed statement does."""
    cert = open(synth["cert"], "rb").read()
    tried = 0
    for f in sorted(os.listdir(synth["receipts"])):
        if not f.startswith("receipt_") or tried >= 3:
            continue
        good = json.load(open(os.path.join(synth["receipts"], f)))
        tx = good["tx_receipt"]
        i, n = int(tx["leaf_index"]), int(tx["tree_size"])
        shape = receipt_check.expected_shape(i, n)
        other = [m for m in range(i + 1, 2 * n + 2)
                 if m != n and receipt_check.expected_shape(i, m) == shape]
        if not other:
            continue
        tried += 1
        m = json.loads(json.dumps(good))
        m["tx_receipt"]["tree_size"] = str(other[0])
        with pytest.raises(receipt_check.ReceiptError, match="signature"):
            receipt_check.verify(m, cert)
        p = tmp_path / "relabelled.json"
        p.write_text(json.dumps(m))
        r = run("receipt", "verify", str(p), "--service-cert", synth["cert"])
        assert r.returncode == 1 and "signature" in r.stderr, (r.stdout, r.stderr)
        receipt_check.verify(good, cert)  # the original still verifies
    assert tried == 3


# --- audit -------------------------------------------------------------------------

def test_clean_ledger_audits(synth):
    r = audit(synth, synth["ledger"])
    assert r.returncode == 0, r.stderr
    assert "audit OK" in r.stdout and "private parts checked" in r.stdout
    assert re.search(r"\d+ entries/s", r.stdout)
    assert audit(synth, synth["ledger"], secret=False).returncode == 0
    show = run("ledger", "show", synth["ledger"], check=0).stdout.splitlines()
    assert len(show) == 400 + 31  # 400 puts, a signature every 13 and one at the end
    assert sum("type=signature" in line for line in show) == 31


def assert_fails(r, chunk, offset=None, reason=None):
    assert r.returncode == 1, (r.stdout, r.stderr)
    m = re.search(r"FAILED: chunk (\S+), offset (\d+), txid (\S+): (.*)", r.stderr)
    assert m, r.stderr
    assert m.group(1) == chunk, r.stderr
    if offset is not None:
        assert int(m.group(2)) == offset, r.stderr
    if reason is not None:
        assert re.search(reason, m.group(4)), r.stderr
    return m


def test_flipped_byte_fails(synth, tmp_path):
    d = tampered(synth, tmp_path)
    name = chunks(d)[2]
    data = bytearray(open(os.path.join(d, name), "rb").read())
    off, n = frames(data)[3]
    data[off + 60] ^= 0x01  # inside the claims digest
    open(os.path.join(d, name), "wb").write(data)
    assert_fails(audit(synth, d), name, off, "checksum")


def test_flipped_byte_with_fixed_crc_fails_on_the_tree(synth, tmp_path):
    d = tampered(synth, tmp_path)
    name = chunks(d)[2]
    path = os.path.join(d, name)
    data = bytearray(open(path, "rb").read())
    fr = frames(data)
    off, n = next((o, n) for o, n in fr if entry_type(data, o) == 1)
    data[off + n - 10] ^= 0x01  # inside the sealed private part
    refresh_crc(data, off, n)
    open(path, "wb").write(data)
    # without the secret: the next signature's root no longer matches
    r = audit(synth, d, secret=False)
    assert r.returncode == 1
    assert "does not match" in r.stderr
    # with it: the private part itself fails, at its own offset
    assert_fails(audit(synth, d), name, off, "decrypt")


def test_truncated_chunk_fails(synth, tmp_path):
    d = tampered(synth, tmp_path)
    name = chunks(d)[1]
    path = os.path.join(d, name)
    size = os.path.getsize(path)
    os.truncate(path, size - 7)
    assert_fails(audit(synth, d), name, None, "ends|length|holds")


def test_deleted_chunk_fails(synth, tmp_path):
    d = tampered(synth, tmp_path)
    names = chunks(d)
    os.remove(os.path.join(d, names[2]))
    assert_fails(audit(synth, d), names[3], 0, "missing")


def test_swapped_entries_fail(synth, tmp_path):
    d = tampered(synth, tmp_path)
    name = chunks(d)[1]
    path = os.path.join(d, name)
    data = bytearray(open(path, "rb").read())
    fr = frames(data)
    (o1, n1), (o2, n2) = fr[1], fr[2]
    a, b = bytes(data[o1:o1 + n1]), bytes(data[o2:o2 + n2])
    data[o1:o2 + n2] = b + a
    open(path, "wb").write(data)
    assert_fails(audit(synth, d), name, o1 + n2, "out of order")


def test_replaced_signature_fails(synth, tmp_path):
    d = tampered(synth, tmp_path)
    name = chunks(d)[1]
    path = os.path.join(d, name)
    data = bytearray(open(path, "rb").read())
    sigs = [(o, n) for o, n in frames(data) if entry_type(data, o) == 5]
    assert len(sigs) >= 1
    (o, n) = sigs[0]
    # a valid signature made by another key over another root, same length
    other = tmp_path / "other"
    run("ledger", "synth", str(other), "--entries", "30", "--sig-every", "1", check=0)
    odir = str(other / "ledger")
    odata = open(os.path.join(odir, chunks(odir)[0]), "rb").read()
    pub = 4 + 96  # the public part starts after the frame length, fixed fields, public_len
    assert data[o + pub] == 2  # signature payload version
    sl = data[o + pub + 73] << 8 | data[o + pub + 74]
    same = [x for x, _ in frames(odata) if entry_type(odata, x) == 5
            and (odata[x + pub + 73] << 8 | odata[x + pub + 74]) == sl]
    assert same, "no signature of the same DER length among 30"
    sig_off, osig_off = o + pub + 75, same[0] + pub + 75
    data[sig_off:sig_off + sl] = odata[osig_off:osig_off + sl]
    refresh_crc(data, o, n)
    open(path, "wb").write(data)
    assert_fails(audit(synth, d), name, o, "signature")


def test_audit_reports_progress_on_a_tty(synth):
    # script(1) gives lskvctl a terminal; the progress bar goes to it.
    if not shutil.which("script"):
        pytest.skip("no script(1)")
    cmd = f"{LSKVCTL} ledger audit {synth['ledger']} --service-cert {synth['cert']}"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout
    assert "%" in p.stdout and "entries/s" in p.stdout
