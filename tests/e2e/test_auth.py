"""Auth (issue 11 point 1): users, roles, permissions and simple tokens, as
etcd 3.4 has them.

- the same etcdctl sequence (user/role management, auth enable/disable, KV,
  watch and lease commands with --user, wrong passwords) on etcd and lskvd:
  normalized outputs equal;
- a permission matrix over raw gRPC: every RPC for each of no user, wrong
  password, expired token, read-only, write-only, prefix role and root gets
  etcd's answer, and what is denied moves no revision;
- the JSON gateway's Authorization header;
- a password never reaches the data dir or a log.
"""
import json
import os
import threading
import time

import grpc
import pytest

from conftest import TARGET, lskvd_only, normalize, rpc_error, rpc_pb2, rpc_pb2_grpc

ROOT_PW = "r00t-Pa55"
TTL = 2  # --auth-token-ttl for the matrix: tokens expire quickly


def ctl(server, *args, user=None, input=None):
    a = list(args)
    if user is not None:
        a = ["--user", user] + a
    r = server.etcdctl(*a, input=input)
    return (r.returncode, normalize(r.stdout, server), normalize(r.stderr, server))


SETUP = [
    ("auth", "enable"),                               # no root user
    ("user", "add", "root:" + ROOT_PW),
    ("auth", "enable"),                               # root without the root role
    ("user", "get", "root"),
    ("role", "get", "root"),                          # granted, never made
    ("user", "add", "ro:ro-pw"),
    ("user", "add", "wo:wo-pw"),
    ("user", "add", "pre:pre-pw"),
    ("user", "add", "ro:again"),                      # exists
    ("user", "add", "nopw", "--no-password"),
    ("role", "add", "reader"),
    ("role", "add", "writer"),
    ("role", "add", "prefix"),
    ("role", "add", "reader"),                        # exists
    ("role", "grant-permission", "reader", "read", "k"),
    ("role", "grant-permission", "reader", "read", "a", "c"),
    ("role", "grant-permission", "writer", "write", "k"),
    ("role", "grant-permission", "--prefix", "prefix", "readwrite", "p/"),
    ("role", "grant-permission", "--from-key", "prefix", "read", "z"),
    ("role", "grant-permission", "ghost", "read", "k"),  # no such role
    ("user", "grant-role", "ro", "reader"),
    ("user", "grant-role", "wo", "writer"),
    ("user", "grant-role", "pre", "prefix"),
    ("user", "grant-role", "pre", "ghost"),           # no such role
    ("user", "grant-role", "ghost", "reader"),        # no such user
    ("user", "grant-role", "root", "root"),
    ("role", "get", "root"),
    ("role", "revoke-permission", "reader", "zz"),    # not granted
    ("role", "grant-permission", "reader", "readwrite", "k"),  # updates the grant
    ("role", "grant-permission", "reader", "read", "k"),
    ("user", "revoke-role", "ro", "ghost"),           # not granted
    ("user", "list"),
    ("role", "list"),
    ("user", "get", "ro"),
    ("user", "get", "ghost"),
    ("role", "get", "prefix"),
    ("role", "get", "ghost"),
    ("-w", "json", "role", "get", "reader"),
    ("put", "k", "v0"),
    ("put", "p/1", "one"),
]


def sequence(server):
    """The etcdctl transcript of one server (normalized)."""
    out = []
    for args in SETUP:
        out.append((args, ctl(server, *args)))
    steps = [
        # auth on: who may do what
        (None, ("auth", "enable")),
        (None, ("get", "k")),
        ("ro:wrong", ("get", "k")),
        ("ghost:pw", ("get", "k")),
        ("ro:ro-pw", ("get", "k")),
        ("ro:ro-pw", ("get", "a", "c")),
        ("ro:ro-pw", ("get", "a", "d")),
        ("ro:ro-pw", ("put", "k", "v1")),
        ("wo:wo-pw", ("put", "k", "v1")),
        ("wo:wo-pw", ("get", "k")),
        ("wo:wo-pw", ("del", "k")),
        ("pre:pre-pw", ("put", "p/2", "two")),
        ("pre:pre-pw", ("get", "--prefix", "p/")),
        ("pre:pre-pw", ("get", "p", "--prefix")),
        ("pre:pre-pw", ("get", "zz", "--from-key")),
        ("pre:pre-pw", ("put", "k", "x")),
        ("pre:pre-pw", ("del", "--prefix", "p/")),
        ("pre:pre-pw", ("txn",), "\nput p/3 three\n\n"),
        ("pre:pre-pw", ("txn",), "\nput k three\n\n"),
        ("nopw:", ("get", "k")),
        ("ro:ro-pw", ("user", "list")),
        ("ro:ro-pw", ("user", "get", "ro")),
        ("ro:ro-pw", ("role", "get", "reader")),
        ("ro:ro-pw", ("role", "get", "writer")),
        ("ro:ro-pw", ("user", "add", "x:y")),
        ("ro:ro-pw", ("auth", "disable")),
        ("root:" + ROOT_PW, ("-w", "json", "put", "k", "v2")),
        ("root:" + ROOT_PW, ("get", "--prefix", "")),
        ("root:" + ROOT_PW, ("user", "delete", "root")),
        ("root:" + ROOT_PW, ("user", "revoke-role", "root", "root")),
        ("root:" + ROOT_PW, ("role", "delete", "root")),
        ("root:" + ROOT_PW, ("user", "revoke-role", "ro", "writer")),
        ("root:" + ROOT_PW, ("role", "revoke-permission", "reader", "a", "c")),
        ("root:" + ROOT_PW, ("role", "revoke-permission", "reader", "a", "c")),
        ("ro:ro-pw", ("get", "a", "c")),
        ("root:" + ROOT_PW, ("user", "passwd", "ro", "--interactive=false"), "ro-pw2\n"),
        ("ro:ro-pw", ("get", "k")),
        ("ro:ro-pw2", ("get", "k")),
        ("root:" + ROOT_PW, ("user", "revoke-role", "ro", "reader")),
        ("ro:ro-pw2", ("get", "k")),
        ("root:" + ROOT_PW, ("role", "delete", "writer")),
        ("root:" + ROOT_PW, ("user", "get", "wo")),
        ("wo:wo-pw", ("put", "k", "v3")),
        ("root:" + ROOT_PW, ("user", "delete", "wo")),
        ("root:" + ROOT_PW, ("user", "delete", "wo")),
        ("wo:wo-pw", ("put", "k", "v3")),
        ("root:" + ROOT_PW, ("endpoint", "hashkv")),
        ("ro:ro-pw2", ("endpoint", "hashkv")),
        ("root:" + ROOT_PW, ("auth", "disable")),
        (None, ("get", "k")),
        (None, ("user", "list")),
        (None, ("auth", "enable")),
        ("root:" + ROOT_PW, ("get", "k")),
    ]
    for step in steps:
        user, args = step[0], step[1]
        inp = step[2] if len(step) > 2 else None
        out.append((user, args, ctl(server, *args, user=user, input=inp)))
    return out


def test_etcdctl_auth_sequence_matches_etcd(pair):
    etcd, lskvd = pair
    want = sequence(etcd)
    got = sequence(lskvd)
    for w, g in zip(want, got):
        assert g == w
    assert len(got) == len(want)


def test_watch_and_lease_with_user(pair):
    def run(server):
        out = []
        for args in [("user", "add", "root:" + ROOT_PW), ("user", "grant-role", "root", "root"),
                     ("user", "add", "ro:ro-pw"), ("role", "add", "reader"),
                     ("role", "grant-permission", "reader", "read", "k"),
                     ("user", "grant-role", "ro", "reader"), ("auth", "enable")]:
            out.append(ctl(server, *args))
        root = "root:" + ROOT_PW
        r = server.etcdctl("--user", root, "lease", "grant", "100")
        lease = r.stdout.split()[1]
        out.append(ctl(server, "put", "--lease=" + lease, "k", "v", user=root))
        out.append(ctl(server, "lease", "revoke", lease, user="ro:ro-pw"))
        out.append(ctl(server, "lease", "list", user="ro:ro-pw")[0])
        # a watch the user may not make is canceled by the server
        out.append(ctl(server, "watch", "secret", user="ro:ro-pw"))
        # one it may make sees the put that follows
        env = dict(os.environ, ETCDCTL_API="3")
        import subprocess
        from conftest import ETCDCTL
        w = subprocess.Popen([ETCDCTL, "--endpoints=" + server.endpoint, "--user", "ro:ro-pw",
                              "watch", "k"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
        time.sleep(1.5)
        out.append(ctl(server, "put", "k", "v2", user=root))
        time.sleep(1)
        w.terminate()
        so, _ = w.communicate(timeout=10)
        out.append(so)
        out.append(ctl(server, "lease", "revoke", lease, user=root))
        out.append(ctl(server, "get", "k", user=root))
        return [repr(o).replace(lease, "<LEASE>") for o in out]
    etcd, lskvd = pair
    want, got = run(etcd), run(lskvd)
    assert got == want
    assert "PUT\\nk\\nv2" in got[-3], got[-3]


# ---------------------------------------------------------------- matrix
def md(token):
    return [("token", token)] if token else []


def authenticate(server, name, password):
    stub = rpc_pb2_grpc.AuthStub(server.channel())
    code, resp = rpc_error(stub.Authenticate,
                           rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=10)
    return (code, None if code == grpc.StatusCode.OK else resp,
            resp.token if code == grpc.StatusCode.OK else None)


def revision(server):
    resp = rpc_pb2_grpc.KVStub(server.channel()).Range(
        rpc_pb2.RangeRequest(key=b"k"), metadata=md(root_token(server)), timeout=10)
    return resp.header.revision


def root_token(server):
    return authenticate(server, "root", ROOT_PW)[2]


def watch_first(server, token, key, range_end=b""):
    stub = rpc_pb2_grpc.WatchStub(server.channel())
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key,
                                                                         range_end=range_end))
    stream = stub.Watch(iter([req]), metadata=md(token), timeout=5)
    try:
        first = next(stream)
        return ("watch", first.created, first.canceled, first.cancel_reason,
                first.watch_id, first.header.revision)
    except grpc.RpcError as e:
        return ("watch-error", e.code(), e.details())
    finally:
        stream.cancel()


def rpcs(server, lease_id):
    kv = rpc_pb2_grpc.KVStub(server.channel())
    lease = rpc_pb2_grpc.LeaseStub(server.channel())
    auth = rpc_pb2_grpc.AuthStub(server.channel())
    maint = rpc_pb2_grpc.MaintenanceStub(server.channel())
    put_p = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"p/t", value=b"t"))
    put_k = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"t"))
    cmp_k = rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.VERSION, version=0)
    return [
        ("range k", kv.Range, rpc_pb2.RangeRequest(key=b"k")),
        ("range [a,c)", kv.Range, rpc_pb2.RangeRequest(key=b"a", range_end=b"c")),
        ("range p/", kv.Range, rpc_pb2.RangeRequest(key=b"p/", range_end=b"p0")),
        ("range all", kv.Range, rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0")),
        ("put k", kv.Put, rpc_pb2.PutRequest(key=b"k", value=b"m")),
        ("put k prev", kv.Put, rpc_pb2.PutRequest(key=b"k", value=b"m", prev_kv=True)),
        ("put p/x", kv.Put, rpc_pb2.PutRequest(key=b"p/x", value=b"m")),
        ("put q", kv.Put, rpc_pb2.PutRequest(key=b"q", value=b"m")),
        ("put lease", kv.Put, rpc_pb2.PutRequest(key=b"p/l", value=b"m", lease=lease_id)),
        ("delete k", kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"k")),
        ("delete p/ prev", kv.DeleteRange,
         rpc_pb2.DeleteRangeRequest(key=b"p/", range_end=b"p0", prev_kv=True)),
        ("txn p", kv.Txn, rpc_pb2.TxnRequest(success=[put_p])),
        ("txn cmp k", kv.Txn, rpc_pb2.TxnRequest(compare=[cmp_k], failure=[put_p])),
        ("txn put k", kv.Txn, rpc_pb2.TxnRequest(failure=[put_k])),
        ("lease revoke", lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=lease_id)),
        ("user list", auth.UserList, rpc_pb2.AuthUserListRequest()),
        ("user get root", auth.UserGet, rpc_pb2.AuthUserGetRequest(name="root")),
        ("role list", auth.RoleList, rpc_pb2.AuthRoleListRequest()),
        ("role get prefix", auth.RoleGet, rpc_pb2.AuthRoleGetRequest(role="prefix")),
        ("role add", auth.RoleAdd, rpc_pb2.AuthRoleAddRequest(name="new")),
        ("hashkv", maint.HashKV, rpc_pb2.HashKVRequest()),
    ]


def answer(code, resp):
    if code != grpc.StatusCode.OK:
        return (code, resp)
    h = getattr(resp, "header", None)
    return ("OK", h.revision if h is not None else None)


IDENTITIES = ["none", "wrong password", "expired token", "ro", "wo", "pre", "root"]


def setup_matrix(server):
    for args in [("user", "add", "root:" + ROOT_PW), ("user", "grant-role", "root", "root"),
                 ("user", "add", "ro:ro-pw"), ("user", "add", "wo:wo-pw"),
                 ("user", "add", "pre:pre-pw"),
                 ("role", "add", "reader"), ("role", "add", "writer"), ("role", "add", "prefix"),
                 ("role", "grant-permission", "reader", "read", "k"),
                 ("role", "grant-permission", "reader", "read", "a", "c"),
                 ("role", "grant-permission", "writer", "write", "k"),
                 ("role", "grant-permission", "--prefix", "prefix", "readwrite", "p/"),
                 ("user", "grant-role", "ro", "reader"), ("user", "grant-role", "wo", "writer"),
                 ("user", "grant-role", "pre", "prefix"),
                 ("put", "k", "v"), ("put", "p/1", "v"), ("auth", "enable")]:
        r = server.etcdctl(*args)
        assert r.returncode == 0, (args, r.stderr)


def matrix(server):
    setup_matrix(server)
    rows = []
    expired = authenticate(server, "ro", "ro-pw")[2]
    time.sleep(TTL + 3)  # etcd's token keeper sweeps once a second
    for ident in IDENTITIES:
        token, err = None, None
        if ident == "wrong password":
            code, err, _ = authenticate(server, "ro", "nope")
            rows.append((ident, "authenticate", code, err))
            continue
        if ident == "expired token":
            token = expired
        elif ident != "none":
            code, err, token = authenticate(server, ident, {"ro": "ro-pw", "wo": "wo-pw",
                                                            "pre": "pre-pw",
                                                            "root": ROOT_PW}[ident])
            assert code == grpc.StatusCode.OK, (ident, err)
        rt = root_token(server)
        lease_id = rpc_pb2_grpc.LeaseStub(server.channel()).LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=300), metadata=md(rt), timeout=10).ID
        rpc_pb2_grpc.KVStub(server.channel()).Put(
            rpc_pb2.PutRequest(key=b"k", value=b"leased", lease=lease_id), metadata=md(rt),
            timeout=10)
        for name, fn, req in rpcs(server, lease_id):
            before = revision(server)
            code, resp = rpc_error(fn, req, metadata=md(token), timeout=10)
            after = revision(server)
            rows.append((ident, name) + answer(code, resp))
            if code != grpc.StatusCode.OK:
                assert after == before, (server.kind, ident, name, "denied but moved")
        rows.append((ident, "watch k") + watch_first(server, token, b"k"))
        rows.append((ident, "watch p/") + watch_first(server, token, b"p/", b"p0"))
        # the lease left over (if the revoke was denied) goes, as root
        rpc_error(rpc_pb2_grpc.LeaseStub(server.channel()).LeaseRevoke,
                  rpc_pb2.LeaseRevokeRequest(ID=lease_id), metadata=md(rt), timeout=10)
    return rows


@pytest.mark.slow
def test_permission_matrix(server_factory):
    extra = ["--auth-token-ttl", str(TTL)]
    etcd = server_factory("etcd", extra=extra)
    lskvd = server_factory("lskvd", extra=extra)
    want = matrix(etcd)
    got = matrix(lskvd)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g == w
    # the matrix is not vacuous: every identity was refused something and
    # root was refused nothing
    for ident in ("none", "expired token", "ro", "wo", "pre"):
        assert any(r[0] == ident and r[2] not in ("OK", "watch") for r in got), ident
    assert all(r[2] in ("OK", "watch") and not (r[2] == "watch" and r[4])
               for r in got if r[0] == "root"), [r for r in got if r[0] == "root"]


# ---------------------------------------------------------------- gateway
def test_gateway_authorization_header(pair):
    import json
    import subprocess

    def curl(server, path, body, token=None):
        cmd = ["curl", "-s", "-X", "POST", "http://%s%s" % (server.endpoint, path), "-d",
               json.dumps(body)]
        if token:
            cmd += ["-H", "Authorization: " + token]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        obj = json.loads(out)
        obj.pop("header", None)
        obj.pop("token", None)
        return obj

    def run(server):
        setup_matrix(server)
        tok = json.loads(subprocess.run(
            ["curl", "-s", "-X", "POST", "http://%s/v3/auth/authenticate" % server.endpoint,
             "-d", json.dumps({"name": "ro", "password": "ro-pw"})],
            capture_output=True, text=True, timeout=20).stdout)["token"]
        return [
            curl(server, "/v3/auth/authenticate", {"name": "ro", "password": "bad"}),
            curl(server, "/v3/kv/range", {"key": "aw=="}),
            curl(server, "/v3/kv/range", {"key": "aw=="}, tok),
            curl(server, "/v3/kv/range", {"key": "cC8x"}, tok),
            curl(server, "/v3/kv/put", {"key": "aw==", "value": "eA=="}, tok),
            curl(server, "/v3/kv/range", {"key": "aw=="}, "bogus.1"),
        ]
    etcd, lskvd = pair
    want, got = run(etcd), run(lskvd)
    assert got == want
    assert got[2]["kvs"][0]["value"] == "dg=="


def test_membership_changes_and_snapshots_are_roots(pair, tmp_path):
    """With auth on, member add/remove/update/promote and snapshot save are
    refused to a user without the root role, as etcd refuses them
    (checkMembershipOperationPermission, authMaintenanceServer), and root
    may still list members."""
    out = {}
    for server in pair:
        setup_matrix(server)
        ids = server.etcdctl("--user", "root:" + ROOT_PW, "member", "list", "-w", "json")
        assert ids.returncode == 0, ids.stderr
        me = "%x" % json.loads(ids.stdout)["members"][0]["ID"]
        rows = []
        for args in [("member", "add", "m9", "--peer-urls=http://127.0.0.1:1"),
                     ("member", "add", "m9", "--learner", "--peer-urls=http://127.0.0.1:1"),
                     ("member", "remove", me),
                     ("member", "update", me, "--peer-urls=http://127.0.0.1:2"),
                     ("member", "promote", me),
                     ("snapshot", "save", str(tmp_path / ("%s.db" % server.kind)))]:
            code, _, err = ctl(server, *args, user="ro:ro-pw")
            rows.append((args[:2], code, err.strip().splitlines()[-1:]))
        code, _, _ = ctl(server, "member", "list", user="ro:ro-pw")
        rows.append(("member list", code))
        out[server.kind] = rows
    assert out["lskvd"] == out["etcd"]
    assert all(r[1] != 0 for r in out["lskvd"][:-1])


def test_health_is_answered_without_a_user_when_auth_is_on(pair):
    """etcd's /health reads through the server itself, not as a client: it
    stays true with auth enabled, and the client URL and /metrics agree."""
    import subprocess
    out = {}
    for server in pair:
        assert ctl(server, "user", "add", "root:root-pw")[0] == 0
        assert ctl(server, "auth", "enable")[0] == 0
        r = subprocess.run(["curl", "-s", "-w", " %{http_code}",
                            "http://%s/health" % server.endpoint],
                           capture_output=True, text=True, timeout=20)
        out[server.kind] = r.stdout
    assert out["lskvd"] == out["etcd"]
    assert out["lskvd"].startswith('{"health":"true"}')


# ---------------------------------------------------------------- passwords
PASSWORDS = ["Zq7-unique-passw0rd-one", "Xk3-unique-passw0rd-two", "Wm5-unique-passw0rd-new"]


@lskvd_only
def test_passwords_never_stored_or_logged(server_factory):
    """Users with distinctive passwords, a password change, logins (right and
    wrong), a snapshot and a restart at debug log level: not one byte string
    of a password anywhere under the data dir or in the log. (etcd 3.4 fails
    this: its WAL holds UserAdd's password in the clear, hashed at apply.)"""
    s = server_factory("lskvd", extra=["--log-level", "debug", "--snapshot-count", "8"]
                       if TARGET != "etcd" else ["--log-level", "debug"])
    root, u = "root:" + PASSWORDS[0], "u:" + PASSWORDS[1]
    for args in [("user", "add", root), ("user", "grant-role", "root", "root"),
                 ("user", "add", u), ("auth", "enable")]:
        r = s.etcdctl(*args)
        assert r.returncode == 0, r.stderr
    for i in range(20):  # past --snapshot-count: a snapshot holds the store
        r = s.etcdctl("--user", root, "put", "k%d" % i, "v")
        assert r.returncode == 0, r.stderr
    assert s.etcdctl("--user", u, "get", "k1").returncode != 0  # no role
    assert s.etcdctl("--user", "u:" + PASSWORDS[2] + "x", "get", "k1").returncode != 0
    r = s.etcdctl("--user", root, "user", "passwd", "u", "--interactive=false",
                  input=PASSWORDS[2] + "\n")
    assert r.returncode == 0, r.stderr
    r = s.etcdctl("--user", "u:" + PASSWORDS[2], "user", "get", "u")
    assert r.returncode == 0 and "User: u" in r.stdout, r.stderr
    s.restart() if hasattr(s, "restart") else (s.stop(), s.start())
    r = s.etcdctl("--user", "u:" + PASSWORDS[2], "user", "get", "u")
    assert r.returncode == 0, r.stderr
    s.stop()
    files = []
    for root_dir in (s.data_dir, s.workdir):
        for d, _, names in os.walk(root_dir):
            files += [os.path.join(d, n) for n in names]
    marker = "wal" if s.is_etcd else "raft"  # the log is there to be searched
    assert any(marker in f for f in files) and s.log_path.exists()
    seen = 0
    for f in set(files):
        with open(f, "rb") as fh:
            data = fh.read()
        seen += len(data)
        for pw in PASSWORDS:
            assert pw.encode() not in data, (f, pw)
            assert pw[::-1].encode() not in data, (f, pw)
    assert seen > 0
    if TARGET != "etcd":
        assert b"authentication failed for user u" in open(s.log_path, "rb").read()


# ---------------------------------------------------------------- client certificates
def test_client_cert_cn_is_the_user(server_factory, tmp_path):
    """--client-cert-auth with auth on: the verified certificate's CN is the
    user (no token needed), a token still wins, an unknown CN is refused."""
    from test_client_tls import ctl as tls_ctl, make_ca, make_signed, start
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "ca")
    pki = {"ca": str(ca[0]),
           "server": make_signed(d, "server", ca, "127.0.0.1", "IP:127.0.0.1,DNS:localhost"),
           "root": make_signed(d, "root", ca, "root"),
           "alice": make_signed(d, "alice", ca, "alice"),
           "bob": make_signed(d, "bob", ca, "bob")}

    def run(kind):
        s = start(server_factory, kind, pki, "--client-cert-auth", "--trusted-ca-file", pki["ca"])
        out = []
        for args in [("user", "add", "root:" + ROOT_PW), ("user", "grant-role", "root", "root"),
                     ("user", "add", "alice:alice-pw"), ("role", "add", "reader"),
                     ("role", "grant-permission", "reader", "read", "k"),
                     ("user", "grant-role", "alice", "reader"), ("put", "k", "v"),
                     ("auth", "enable")]:
            out.append(tls_ctl(s, pki, *args, client="root"))
        out += [
            tls_ctl(s, pki, "get", "k", "--print-value-only", client="alice"),
            tls_ctl(s, pki, "put", "k", "x", client="alice"),
            tls_ctl(s, pki, "put", "k", "x", client="bob"),
            tls_ctl(s, pki, "get", "k", client="bob"),
            tls_ctl(s, pki, "put", "k", "y", client="root"),
            tls_ctl(s, pki, "--user", "root:" + ROOT_PW, "put", "k", "z", client="alice"),
            tls_ctl(s, pki, "user", "list", client="alice"),
            tls_ctl(s, pki, "user", "list", client="root"),
            tls_ctl(s, pki, "get", "k", "--print-value-only", client="alice"),
        ]
        return out
    want, got = run("etcd"), run("lskvd")
    assert got == want
    assert got[8] == (0, "v") and got[9][0] != 0 and got[12] == (0, "OK"), got


# ---------------------------------------------------------------- JWT tokens
def jwt_keys(d):
    import subprocess
    subprocess.run(["openssl", "genrsa", "-out", d / "rs.key", "2048"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", d / "rs.key", "-pubout", "-out", d / "rs.pub"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                    d / "es.key"], check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", d / "es.key", "-pubout", "-out", d / "es.pub"],
                   check=True, capture_output=True)


@pytest.mark.parametrize("method,key", [("RS256", "rs"), ("PS256", "rs"), ("ES256", "es")])
def test_jwt_tokens_as_etcd(server_factory, tmp_path, method, key):
    """--auth-token jwt,...: the same key on etcd and lskvd; a token either
    makes works on the other (same claims, same signature scheme); expired
    tokens, tokens from before an auth change, and a verify-only member
    answer as etcd's."""
    jwt_keys(tmp_path)
    opt = "jwt,pub-key=%s,priv-key=%s,sign-method=%s,ttl=3s" % (
        tmp_path / (key + ".pub"), tmp_path / (key + ".key"), method)
    servers = [server_factory(k, extra=["--auth-token", opt]) for k in ("etcd", "lskvd")]
    for s in servers:
        setup_matrix(s)
    tokens = [authenticate(s, "ro", "ro-pw") for s in servers]
    assert all(t[0] == grpc.StatusCode.OK for t in tokens), tokens
    assert all(t[2].count(".") == 2 for t in tokens)
    rows = []
    for i, s in enumerate(servers):
        kv = rpc_pb2_grpc.KVStub(s.channel())
        for t in (tokens[0][2], tokens[1][2], "x.y.z", tokens[i][2][:-4] + "AAAA"):
            code, resp = rpc_error(kv.Range, rpc_pb2.RangeRequest(key=b"k"), metadata=md(t),
                                   timeout=10)
            rows.append((i, answer(code, resp)))
    want = [("OK", 3)] * 2 + [(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")] * 2
    assert [r[1] for r in rows[:4]] == want and [r[1] for r in rows[4:]] == want, rows
    # an auth change makes the tokens old
    for s in servers:
        assert s.etcdctl("--user", "root:" + ROOT_PW, "role", "add", "extra").returncode == 0
    old = []
    for i, s in enumerate(servers):
        code, resp = rpc_error(rpc_pb2_grpc.KVStub(s.channel()).Range,
                               rpc_pb2.RangeRequest(key=b"k"), metadata=md(tokens[i][2]),
                               timeout=10)
        old.append(answer(code, resp))
    assert old[0] == old[1] == (grpc.StatusCode.INVALID_ARGUMENT,
                                "etcdserver: revision of auth store is old"), old
    # expiry (ttl=3s)
    fresh = [authenticate(s, "ro", "ro-pw")[2] for s in servers]
    time.sleep(4.5)
    late = [answer(*rpc_error(rpc_pb2_grpc.KVStub(s.channel()).Range,
                              rpc_pb2.RangeRequest(key=b"k"), metadata=md(fresh[i]), timeout=10))
            for i, s in enumerate(servers)]
    assert late[0] == late[1] == (grpc.StatusCode.UNAUTHENTICATED,
                                  "etcdserver: invalid auth token"), late
    # a member with the public key only verifies
    vopt = "jwt,pub-key=%s,sign-method=%s" % (tmp_path / (key + ".pub"), method)
    verifiers = [server_factory(k, extra=["--auth-token", vopt]) for k in ("etcd", "lskvd")]
    for v in verifiers:
        setup_matrix(v)
    va = [authenticate(v, "ro", "ro-pw")[:2] for v in verifiers]
    assert va[0] == va[1], va
    assert va[0][0] != grpc.StatusCode.OK
    good = authenticate(servers[0], "root", ROOT_PW)[2]  # revision 4 there, 3 here: old
    seen = [answer(*rpc_error(rpc_pb2_grpc.KVStub(v.channel()).Range,
                              rpc_pb2.RangeRequest(key=b"k"), metadata=md(good), timeout=10))
            for v in verifiers]
    assert seen[0] == seen[1], seen


def test_bad_jwt_options_refuse_the_start(server_factory, tmp_path):
    jwt_keys(tmp_path)
    for opt in ["jwt,pub-key=%s,priv-key=%s,sign-method=XX256" % (tmp_path / "rs.pub",
                                                                  tmp_path / "rs.key"),
                "jwt,sign-method=RS256",
                "jwt,pub-key=%s,priv-key=%s,sign-method=RS256" % (tmp_path / "rs.pub",
                                                                  tmp_path / "es.key")]:
        s = server_factory("lskvd", start=False, extra=["--auth-token", opt])
        with pytest.raises(RuntimeError):
            s.start(timeout=20)


# ---------------------------------------------------------------- clusters
@pytest.mark.slow
def test_auth_replicates_through_the_log(cluster_factory):
    """3 members: users and roles made on one member, auth enabled on
    another, used on the third (simple tokens are per member: etcdctl logs
    in where it talks); a member killed and restarted keeps the store; the
    same transcript on a 3-member etcd."""
    def run(kind):
        c = cluster_factory(kind, 3)
        m1, m2, m3 = c.members
        out = [ctl(m1, "user", "add", "root:" + ROOT_PW), ctl(m1, "user", "grant-role", "root",
                                                                "root"),
               ctl(m1, "user", "add", "ro:ro-pw"), ctl(m2, "role", "add", "reader"),
               ctl(m2, "role", "grant-permission", "reader", "read", "k"),
               ctl(m3, "user", "grant-role", "ro", "reader"), ctl(m1, "put", "k", "v"),
               ctl(m2, "auth", "enable")]
        for m in (m1, m2, m3):
            out.append(ctl(m, "get", "k", "--print-value-only", user="ro:ro-pw"))
            out.append(ctl(m, "put", "k", "x", user="ro:ro-pw"))
            out.append(ctl(m, "get", "k"))
        m3.kill()
        # the two left may have to elect a leader first (failover itself is
        # tests/e2e/test_cluster.py's)
        for _ in range(120):
            if ctl(m1, "put", "w", "1", user="root:" + ROOT_PW)[0] == 0:
                break
            time.sleep(0.5)
        out.append(ctl(m1, "user", "passwd", "ro", "--interactive=false", user="root:" + ROOT_PW,
                       input="ro-pw2\n"))
        m3.start()
        out.append(ctl(m3, "get", "k", "--print-value-only", user="ro:ro-pw"))
        out.append(ctl(m3, "get", "k", "--print-value-only", user="ro:ro-pw2"))
        out.append(ctl(m3, "user", "get", "ro", user="root:" + ROOT_PW))
        return out
    want, got = run("etcd"), run("lskvd")
    assert got == want
    assert got[8] == (0, "v", "") and got[-2] == (0, "v", ""), got


@lskvd_only
def test_denied_requests_leave_no_ledger_entry(lskvd):
    """Refused at request time (no token, wrong user, no root): no raft
    entry, so no ledger entry and no revision; an allowed write adds one
    entry (and its signature)."""
    import subprocess
    from conftest import LSKVCTL

    def entries():
        time.sleep(1)  # the ledger's signature interval (100 ms) has passed
        r = subprocess.run([LSKVCTL, "ledger", "show", str(lskvd.data_dir / "ledger")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return [ln for ln in r.stdout.splitlines() if ln.startswith("leaf=")]

    setup_matrix(lskvd)
    before, rev = entries(), revision(lskvd)
    denied = [("put", "k", "x"), ("del", "k"), ("user", "add", "x:y"), ("role", "add", "z"),
              ("auth", "disable"), ("txn",), ("lease", "revoke", "1234")]
    for user in (None, "ro:ro-pw", "wo:wo-pw"):
        for args in denied:
            if user == "wo:wo-pw" and args[0] in ("put", "del"):
                continue  # wo may write k
            r = lskvd.etcdctl(*((["--user", user] if user else []) + list(args)),
                              input="\nput q x\n\n" if args == ("txn",) else None)
            assert r.returncode != 0 or args == ("txn",), (user, args, r.stdout)
    assert entries() == before
    assert revision(lskvd) == rev
    assert lskvd.etcdctl("--user", "wo:wo-pw", "put", "k", "ok").returncode == 0
    after = entries()
    assert len(after) >= len(before) + 1 and revision(lskvd) == rev + 1
