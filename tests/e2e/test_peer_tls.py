"""etcd's peer TLS flags (--peer-cert-file, --peer-key-file,
--peer-trusted-ca-file, --peer-client-cert-auth) on a 3-member cluster,
against a 3-member etcd 3.4 started with the same flags and Debian's etcd
test fixtures. lskvd presents the operator's certificates in the handshake,
as etcd does, and proves each member's node certificate inside the session
(net/peer.h): a member whose handshake certificate is not from the trusted
CA is refused at the handshake, and the cluster goes on without it."""
import os
import re
import subprocess
import time

import pytest

from conftest import LSKVD, etcdctl, lskvd_only
from test_cluster import member_id

FIXTURES = "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures"
PEER_TLS = ["--peer-cert-file", os.path.join(FIXTURES, "server.crt"),
            "--peer-key-file", os.path.join(FIXTURES, "server.key.insecure"),
            "--peer-trusted-ca-file", os.path.join(FIXTURES, "ca.crt"),
            "--peer-client-cert-auth"]
# A self-signed certificate: not issued by ca.crt.
ROGUE = ["--peer-cert-file", os.path.join(FIXTURES, "CommonName-root.crt"),
         "--peer-key-file", os.path.join(FIXTURES, "CommonName-root.key"),
         "--peer-trusted-ca-file", os.path.join(FIXTURES, "ca.crt"),
         "--peer-client-cert-auth"]


def masked_member_list(c):
    r = etcdctl(c.members[0], "member", "list", "-w", "simple")
    assert r.returncode == 0, r.stderr
    lines = sorted(re.sub(r"^[0-9a-f]+, ", "ID, ", x) for x in r.stdout.splitlines())
    ports = {str(m.peer_port): "P%d" % i for i, m in enumerate(c.members)}
    ports.update({str(m.client_port): "C%d" % i for i, m in enumerate(c.members)})
    return [re.sub(r":(\d+)", lambda g: ":" + ports.get(g.group(1), g.group(1)), x)
            for x in lines]


def test_a_cluster_with_etcds_peer_tls_flags_serves_as_etcd(cluster_factory):
    out = {}
    for kind in ("etcd", "lskvd"):
        c = cluster_factory(kind, 3, extra=PEER_TLS, peer_scheme="https")
        assert etcdctl(c.members[0], "put", "k", "v").returncode == 0
        r = etcdctl(c.members[2], "get", "k", "--print-value-only")
        assert r.returncode == 0 and r.stdout.strip() == "v", r
        out[kind] = masked_member_list(c)
        assert all("https://127.0.0.1:P" in x for x in out[kind]), out[kind]
        c.kill()
    assert out["lskvd"] == out["etcd"]


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_a_member_with_a_certificate_of_another_ca_is_refused(cluster_factory, kind):
    c = cluster_factory(kind, 3, extra=PEER_TLS, peer_scheme="https", start=False)
    # Not lskvd's founder (the lowest member id): the others join through it.
    token = c.members[0].extra[c.members[0].extra.index("--initial-cluster-token") + 1]
    ids = {m.name: member_id(["https://127.0.0.1:%d" % m.peer_port], token) for m in c.members}
    rogue = max(c.members, key=lambda m: ids[m.name])
    good = [m for m in c.members if m is not rogue]
    i = rogue.extra.index("--peer-cert-file")
    rogue.extra = rogue.extra[:i] + ROGUE + rogue.extra[i + len(PEER_TLS):]
    for m in good:
        m.launch()
    rogue.launch()
    for m in good:
        m.wait_ready(90)
    # The two good members form a quorum and serve; the rogue never does.
    assert etcdctl(good[0], "put", "k", "v").returncode == 0
    r = etcdctl(good[1], "get", "k", "--print-value-only")
    assert r.stdout.strip() == "v"
    time.sleep(3)
    r = etcdctl(rogue, "get", "k", "--command-timeout=2s")
    assert r.returncode != 0 or r.stdout.strip() != "v", r
    if kind == "lskvd":
        logs = good[0].log_text() + good[1].log_text()
        assert re.search(r"peer: connection from 127\.0\.0\.1:\d+ .*closed: TLS failure", logs) \
            or "certificate verify failed" in logs, logs[-3000:]


def with_flags(extra, cert, key, allowed):
    """PEER_TLS with this certificate and key, plus an allowed-name flag."""
    out = list(extra)
    out[out.index("--peer-cert-file") + 1] = os.path.join(FIXTURES, cert)
    out[out.index("--peer-key-file") + 1] = os.path.join(FIXTURES, key)
    return out + list(allowed)


# etcd's TestEtcdPeerCNAuth and TestEtcdPeerNameAuth: two members accept
# each other's certificates by CN (or host name), the third is configured
# with a name neither certificate has (its own certificate, server2.crt,
# has CN example2.com and, like server.crt, the SANs localhost and
# 127.0.0.1). Both ends of a connection check the other's certificate, as
# in etcd, and the members that agree form a quorum without the third.
NAME_CASES = {
    "cn": (["--peer-cert-allowed-cn", "example.com"],
           ["--peer-cert-allowed-cn", "example2.com"],
           "remote error: tls: bad certificate"),
    "hostname": (["--peer-cert-allowed-hostname", "localhost"],
                 ["--peer-cert-allowed-hostname", "example2.com"],
                 "client certificate authentication failed"),
}


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
@pytest.mark.parametrize("case", sorted(NAME_CASES))
def test_peer_cert_allowed_names_as_etcd(cluster_factory, kind, case):
    good_flags, odd_flags, odd_log = NAME_CASES[case]
    c = cluster_factory(kind, 3, extra=PEER_TLS, peer_scheme="https", start=False)
    # Not lskvd's founder (the lowest member id), as in etcd's own test.
    token = c.members[0].extra[c.members[0].extra.index("--initial-cluster-token") + 1]
    ids = {m.name: member_id(["https://127.0.0.1:%d" % m.peer_port], token) for m in c.members}
    odd = max(c.members, key=lambda m: ids[m.name])
    good = [m for m in c.members if m is not odd]
    for m in good:
        m.extra = with_flags(m.extra, "server.crt", "server.key.insecure", good_flags)
    odd.extra = with_flags(odd.extra, "server2.crt", "server2.key.insecure", odd_flags)
    for m in c.members:
        m.launch()
    for m in good:
        m.wait_ready(90)
    assert etcdctl(good[0], "put", "k", "v").returncode == 0
    assert etcdctl(good[1], "get", "k", "--print-value-only").stdout.strip() == "v"
    deadline = time.time() + 30
    while odd_log not in odd.log_text() and time.time() < deadline:
        time.sleep(0.5)
    log = odd.log_text()
    assert odd_log in log, log[-3000:]
    assert "ready to serve client requests" not in log, log[-3000:]
    r = etcdctl(odd, "get", "k", "--command-timeout=2s")
    assert r.returncode != 0 or r.stdout.strip() != "v", r


@lskvd_only
@pytest.mark.parametrize("flags,says", [
    (["--peer-cert-allowed-cn", "a", "--peer-cert-allowed-hostname", "b"],
     "AllowedCN and AllowedHostname are mutually exclusive"),
    (["--peer-cert-allowed-cn", "a"], "--peer-cert-allowed-cn: needs"),
])
def test_peer_cert_allowed_names_refused_when_they_cannot_apply(tmp_path, flags, says):
    r = subprocess.run([LSKVD, "--data-dir", str(tmp_path / "d")] + flags, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and says in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()
