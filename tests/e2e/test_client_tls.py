"""Client TLS as etcd 3.4 has it (issue 11 point 2): --client-cert-auth with
--trusted-ca-file (a client needs a certificate the CA signed, else the
handshake fails and the server logs who and why), --trusted-ca-file alone
(no certificate asked for), --cipher-suites (etcd's names, TLS 1.2 only;
an unknown name refuses the start), TLS 1.2 minimum, and TLS flags without
an https:// URL refused rather than ignored. Each case runs against Debian's
etcd and lskvd with the same PKI and flags."""
import subprocess

import pytest

from conftest import ETCDCTL, LSKVD, Server

SUITE_A = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
SUITE_B = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"


def openssl(*args):
    subprocess.run(["openssl", *[str(a) for a in args]], check=True, capture_output=True)


def make_ca(d, name):
    key, crt = d / (name + ".key"), d / (name + ".crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name)
    return crt, key


def make_signed(d, name, ca, cn, san=None):
    key, csr, crt = d / (name + ".key"), d / (name + ".csr"), d / (name + ".crt")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    ext = d / (name + ".ext")
    ext.write_text(("subjectAltName=%s\n" % san if san else "") +
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
    return str(crt), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = make_ca(d, "ca"), make_ca(d, "rogue")
    server = make_signed(d, "server", ca, "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    return {"ca": str(ca[0]), "server": server,
            "alice": make_signed(d, "alice", ca, "alice"),
            "mallory": make_signed(d, "mallory", rogue, "mallory")}


def start(server_factory, kind, pki, *flags):
    tls = {"cert": pki["server"][0], "key": pki["server"][1], "ca": pki["ca"]}
    return server_factory(kind, tls=tls, extra=list(flags))


def ctl(s, pki, *args, client=None):
    cmd = [ETCDCTL, "--endpoints=" + s.url, "--dial-timeout=3s", "--command-timeout=5s",
           "--cacert=" + pki["ca"]]
    if client:
        cmd += ["--cert=" + pki[client][0], "--key=" + pki[client][1]]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60,
                       env={"ETCDCTL_API": "3"})
    return r.returncode, r.stdout.strip()


def s_client(s, pki, *args, client=None):
    """Did a GET /health through openssl s_client get an HTTP answer (so the
    handshake worked, also TLS 1.3's, where the server checks the client's
    certificate after the client thinks it is done)."""
    cmd = ["openssl", "s_client", "-connect", s.endpoint, "-CAfile", pki["ca"], "-quiet",
           "-ign_eof", *args]
    if client:
        cmd += ["-cert", pki[client][0], "-key", pki[client][1]]
    r = subprocess.run(cmd, input="GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, text=True, timeout=30)
    return r.stdout.startswith("HTTP/1.1 200")


def test_client_cert_auth_as_etcd(server_factory, pki):
    """With --client-cert-auth: a CA-signed client certificate works; none,
    or one from another CA, fails at the handshake on both servers, and
    lskvd logs the rejected peer and the reason."""
    seen = []
    for kind in ("etcd", "lskvd"):
        s = start(server_factory, kind, pki, "--client-cert-auth", "--trusted-ca-file", pki["ca"])
        seen.append([
            ctl(s, pki, "put", "k", "v", client="alice"),
            ctl(s, pki, "get", "k", "--print-value-only", client="alice"),
            ctl(s, pki, "get", "k")[0] != 0,
            ctl(s, pki, "get", "k", client="mallory")[0] != 0,
            s_client(s, pki, client="alice"),
            s_client(s, pki),
            s_client(s, pki, client="mallory"),
        ])
        if kind == "lskvd":
            log = s.log_text()
            assert "rejected connection from 127.0.0.1:" in log, log[-2000:]
            assert "certificate" in log.split("rejected connection from", 1)[1].split("\n")[0]
    assert seen[1] == seen[0]
    assert seen[0] == [(0, "OK"), (0, "v"), True, True, True, False, False], seen[0]


def test_trusted_ca_alone_requires_client_certificates_as_etcd(server_factory, pki):
    """etcd 3.4 requires client certificates once --trusted-ca-file is given,
    with or without --client-cert-auth."""
    seen = []
    for kind in ("etcd", "lskvd"):
        s = start(server_factory, kind, pki, "--trusted-ca-file", pki["ca"])
        seen.append([ctl(s, pki, "put", "k", "v")[0] != 0, ctl(s, pki, "put", "k", "v",
                                                              client="alice"),
                     s_client(s, pki), s_client(s, pki, client="alice")])
    assert seen[1] == seen[0] == [True, (0, "OK"), False, True], seen


def test_cipher_suites_and_tls_versions_as_etcd(server_factory, pki):
    """--cipher-suites limits TLS 1.2 to the suites named; TLS 1.3 is not
    limited (Go's rule); TLS 1.1 is refused."""
    seen = []
    for kind in ("etcd", "lskvd"):
        s = start(server_factory, kind, pki, "--cipher-suites", SUITE_A)
        seen.append([
            s_client(s, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"),
            s_client(s, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),
            s_client(s, pki, "-tls1_3"),
            s_client(s, pki, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"),
            ctl(s, pki, "put", "k", "v"),
        ])
    assert seen[1] == seen[0] == [True, False, True, False, (0, "OK")], seen
    s = start(server_factory, "lskvd", pki, "--cipher-suites", SUITE_A + "," + SUITE_B)
    assert s_client(s, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")


def refused(tmp_path, kind, *flags, tls=True):
    """The start is refused: (exit code != 0, the error text)."""
    s = Server(kind, tmp_path / ("%s-refused-%d" % (kind, len(list(tmp_path.iterdir())))),
               tls=tls or None, extra=list(flags))
    r = subprocess.run(s.argv(), capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


def test_bad_tls_flags_refuse_the_start(tmp_path, pki):
    tls = {"cert": pki["server"][0], "key": pki["server"][1], "ca": pki["ca"]}
    code, err = refused(tmp_path, "etcd", "--cipher-suites", "TLS_NO_SUCH_SUITE", tls=tls)
    assert code != 0 and 'unexpected TLS cipher suite "TLS_NO_SUCH_SUITE"' in err, err
    code, err = refused(tmp_path, "lskvd", "--cipher-suites", "TLS_NO_SUCH_SUITE", tls=tls)
    assert code != 0 and 'unexpected TLS cipher suite "TLS_NO_SUCH_SUITE"' in err, err
    # lskvd refuses what it would otherwise ignore (etcd ignores these on http://).
    code, err = refused(tmp_path, "lskvd", "--client-cert-auth", "--trusted-ca-file", pki["ca"],
                        tls=None)
    assert code != 0 and "--client-cert-auth: needs an https:// URL" in err, err
    code, err = refused(tmp_path, "lskvd", "--client-cert-auth", tls=tls)
    assert code != 0 and "--client-cert-auth: needs --trusted-ca-file" in err, err
    code, err = refused(tmp_path, "lskvd", "--client-cert-auth=maybe", tls=tls)
    assert code != 0 and "must be true or false" in err, err
    assert LSKVD


def test_http1_answer_before_close_over_tls_as_etcd(server_factory, pki):
    """An HTTP/1.1 request with Connection: close over TLS gets its answer
    before the close (the collected output waits in OpenSSL's buffer: a
    close once dropped it, curl: "Empty reply from server")."""
    got = []
    for kind in ("etcd", "lskvd"):
        s = start(server_factory, kind, pki)
        out = []
        for args in (["https://%s/health" % s.endpoint],
                     ["-X", "POST", "-d", '{"key":"YQ=="}', "https://%s/v3/kv/range" % s.endpoint]):
            r = subprocess.run(["curl", "-s", "--http1.1", "-H", "Connection: close", "--cacert",
                                pki["ca"], "-w", " %{http_code}", *args],
                               capture_output=True, text=True, timeout=30)
            out.append((r.returncode, r.stdout.rsplit(" ", 1)[-1], r.stdout.startswith("{")))
        got.append(out)
    assert got[1] == got[0] == [(0, "200", True), (0, "200", True)], got


def revoke(d, ca, crt, crl):
    """Adds crt to ca's revocation list and writes the list (PEM) to crl."""
    cnf = d / "ca.cnf"
    if not cnf.exists():
        (d / "index.txt").write_text("")
        (d / "crlnumber").write_text("01\n")
        cnf.write_text("[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\n"
                       "default_md = sha256\ndefault_crl_days = 2\n" % (
                           d / "index.txt", d / "crlnumber"))
    openssl("ca", "-config", cnf, "-keyfile", ca[1], "-cert", ca[0], "-revoke", crt)
    openssl("ca", "-config", cnf, "-keyfile", ca[1], "-cert", ca[0], "-gencrl", "-out", crl)


def test_client_crl_file_as_etcd(server_factory, tmp_path):
    """--client-crl-file: a client certificate the list revokes is refused
    at the handshake, others work; the list is read again for each new
    connection, so a certificate revoked later is refused from then on."""
    seen = []
    for kind in ("etcd", "lskvd"):
        d = tmp_path / kind
        d.mkdir()
        ca = make_ca(d, "ca")
        pki = {"ca": str(ca[0]),
               "server": make_signed(d, "server", ca, "127.0.0.1", "IP:127.0.0.1"),
               "alice": make_signed(d, "alice", ca, "alice"),
               "bob": make_signed(d, "bob", ca, "bob")}
        crl = d / "revoked.crl"
        revoke(d, ca, pki["bob"][0], crl)
        s = start(server_factory, kind, pki, "--client-cert-auth", "--trusted-ca-file", pki["ca"],
                  "--client-crl-file", crl)
        row = [ctl(s, pki, "put", "k", "v", client="alice"),
               ctl(s, pki, "put", "k", "v", client="bob")[0] != 0,
               s_client(s, pki, client="bob")]
        revoke(d, ca, pki["alice"][0], crl)
        row.append(ctl(s, pki, "put", "k", "v", client="alice")[0] != 0)
        seen.append(row)
        if kind == "lskvd":
            assert "certificate revoked" in s.log_text(), s.log_text()[-2000:]
    assert seen[1] == seen[0] == [(0, "OK"), True, False, True], seen


def test_client_cert_allowed_hostname_as_etcd(server_factory, tmp_path):
    """--client-cert-allowed-hostname: only a client certificate valid for
    that name (a DNS SAN, or an IP SAN for an address) is let in; the
    others fail at the handshake (etcd: "client certificate authentication
    failed")."""
    d = tmp_path
    ca = make_ca(d, "ca")
    pki = {"ca": str(ca[0]),
           "server": make_signed(d, "server", ca, "127.0.0.1", "IP:127.0.0.1"),
           "web": make_signed(d, "web", ca, "web", "DNS:web.example.com"),
           "cn-only": make_signed(d, "cnonly", ca, "web.example.com"),
           "other": make_signed(d, "other", ca, "other", "DNS:other.example.com")}
    seen = []
    for kind in ("etcd", "lskvd"):
        s = start(server_factory, kind, pki, "--client-cert-auth", "--trusted-ca-file", pki["ca"],
                  "--client-cert-allowed-hostname", "web.example.com")
        seen.append([ctl(s, pki, "put", "k", "v", client="web"),
                     ctl(s, pki, "put", "k", "v", client="other")[0] != 0,
                     ctl(s, pki, "put", "k", "v", client="cn-only")[0] != 0,
                     s_client(s, pki, client="web"), s_client(s, pki, client="other")])
        if kind == "lskvd":
            assert "client certificate authentication failed" in s.log_text(), \
                s.log_text()[-2000:]
    assert seen[1] == seen[0] == [(0, "OK"), True, True, True, False], seen
