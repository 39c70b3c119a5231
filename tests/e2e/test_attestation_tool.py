"""`lskvctl attestation verify` (src/identity/attestation.h): reports written
here byte by byte (proto/lskvpeer.proto AttestationReport), checked against a
policy file and the key of a real node certificate (from `lskvctl ledger
synth`), whose SPKI digest Python computes on its own. Exit 0 accepted, 1
refused (with the reason), 2 usage or I/O."""
import hashlib
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import LSKVCTL

pytestmark = pytest.mark.skipif(not os.path.exists(LSKVCTL), reason="lskvctl not built")


def run(*args):
    return subprocess.run([LSKVCTL, *args], capture_output=True, text=True, timeout=60)


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def report(version=1, kind=1, measurement=b"\x11" * 32, report_data=b"", evidence=b""):
    def field(num, data):
        return varint(num << 3 | 2) + varint(len(data)) + data
    out = varint(1 << 3) + varint(version) + varint(2 << 3) + varint(kind)
    out += field(3, measurement) + field(4, report_data)
    return out + (field(5, evidence) if evidence else b"")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    base = tmp_path_factory.mktemp("att")
    d = str(base / "node")
    p = run("ledger", "synth", d, "--entries", "2")
    assert p.returncode == 0, p.stderr
    cert_path = os.path.join(d, "identity", "node.pem")
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    policy = str(base / "policy.json")
    with open(policy, "w") as f:
        json.dump({"accept_virtual": True, "measurements": ["11" * 32, "ab" * 48]}, f)
    return {"base": base, "cert": cert_path, "digest": hashlib.sha256(spki).digest(),
            "policy": policy}


def verify(node, name, data, *extra):
    path = str(node["base"] / name)
    with open(path, "wb") as f:
        f.write(data)
    return run("attestation", "verify", path, "--policy", node["policy"], *extra)


def test_report_binding_the_node_certificate_is_accepted(node):
    p = verify(node, "good", report(report_data=node["digest"]), "--node-cert", node["cert"])
    assert p.returncode == 0, p.stderr
    assert "kind: virtual (1)" in p.stdout
    assert "measurement: " + "11" * 32 in p.stdout
    assert "report_data: " + node["digest"].hex() in p.stdout
    assert p.stdout.rstrip().endswith("verdict: accepted")
    p = verify(node, "good", report(report_data=node["digest"]),
               "--key-digest", node["digest"].hex())
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("name,kw,why", [
    ("other-key", dict(report_data=b"\x01" * 32), "report_data does not bind the key"),
    ("other-measurement", dict(measurement=b"\x12" * 32), "measurement 1212"),
    ("version-2", dict(version=2), "format version 2, this build reads 1"),
    ("sev-snp", dict(kind=2, measurement=b"\xab" * 48), "kind sev-snp (2) cannot be verified"),
    ("evidence", dict(evidence=b"quote"), "no evidence"),
])
def test_each_refusal_names_its_reason(node, name, kw, why):
    kw.setdefault("report_data", node["digest"])
    p = verify(node, name, report(**kw), "--node-cert", node["cert"])
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert why in p.stderr
    assert p.stdout.rstrip().endswith("verdict: refused")


def test_virtual_refused_by_policy_and_malformed_and_usage(node):
    strict = str(node["base"] / "strict.json")
    with open(strict, "w") as f:
        f.write('{"accept_virtual": false, "measurements": ["%s"]}' % ("11" * 32))
    path = str(node["base"] / "r")
    with open(path, "wb") as f:
        f.write(report(report_data=node["digest"]))
    p = run("attestation", "verify", path, "--policy", strict, "--node-cert", node["cert"])
    assert p.returncode == 1 and "virtual reports are not allowed" in p.stderr
    p = verify(node, "cut", report(report_data=node["digest"])[:30], "--node-cert", node["cert"])
    assert p.returncode == 1 and "malformed" in p.stderr
    p = run("attestation", "verify", path, "--node-cert", node["cert"])
    assert p.returncode == 2 and "need FILE, --policy" in p.stderr
    bad = str(node["base"] / "bad.json")
    with open(bad, "w") as f:
        f.write('{"accept_virtual": true, "measurments": []}')
    p = run("attestation", "verify", path, "--policy", bad, "--node-cert", node["cert"])
    assert p.returncode == 2 and 'unknown key "measurments"' in p.stderr and bad in p.stderr
