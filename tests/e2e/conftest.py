"""Shared fixtures and helpers for the lskvd end-to-end suite.

Every test starts its own servers (free ports, own temp data dir) and kills
them at teardown. The "lskvd" fixture runs $LSKVD (default build/debug/lskvd);
with LSKV_E2E_TARGET=etcd it runs a second etcd instead, which validates the
tests themselves. Tests that only make sense for lskvd use @lskvd_only.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("LSKV_E2E_TARGET", "lskvd")
LSKVD = os.environ.get("LSKVD") or str(REPO / "build" / "debug" / "lskvd")
ETCD = shutil.which("etcd", path="/usr/bin:/usr/local/bin") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl", path="/usr/bin:/usr/local/bin") or "/usr/bin/etcdctl"
READY_LINE = b"ready to serve client requests"


def _lskvctl_path():
    """lskvctl next to $LSKVD (the same build flavour), else the debug one."""
    if os.environ.get("LSKVCTL"):
        return os.environ["LSKVCTL"]
    p = Path(LSKVD).parent / "lskvctl"
    return str(p) if p.exists() else str(REPO / "build" / "debug" / "lskvctl")


LSKVCTL = _lskvctl_path()
MAX_REQUEST_BYTES = 1572864  # etcd's default, passed explicitly to both

lskvd_only = pytest.mark.skipif(
    TARGET == "etcd", reason="lskvd-only behaviour (LSKV_E2E_TARGET=etcd)")


def lskvd_xfail(reason):
    """A known lskvd bug: strict xfail against lskvd, a plain test against etcd."""
    return pytest.mark.xfail(TARGET != "etcd", strict=True, reason=reason)


def _ephemeral_low():
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_given_ports = set()


def free_port():
    """A port that was free a moment ago on 127.0.0.1, below the kernel's
    ephemeral range: a port the kernel hands out (bind to port 0) can be
    taken by any outgoing connection made before the server that is to
    listen on it starts (CI: "bind: address already in use" for a member
    launched after the others had connected). Never the same one twice."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(10000, low if low > 11000 else 32768)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket() as s:  # a crowded machine: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One single-member etcd or lskvd process with its own data dir."""

    def __init__(self, kind, workdir, name="n1", tls=None, extra=(), initial_cluster=None):
        assert kind in ("etcd", "lskvd")
        self.kind = kind  # what the test asked for
        self.binary = ETCD if (kind == "etcd" or TARGET == "etcd") else LSKVD
        self.is_etcd = self.binary == ETCD
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self.name = name
        self.tls = tls  # dict(cert=..., key=..., ca=...) or None
        self.extra = list(extra)
        self.initial_cluster = initial_cluster  # None: this member alone
        self.peer_scheme = "http"  # "https" with etcd's peer TLS flags
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self._log_offset = 0
        self.starts = 0  # grpc_channel: a restarted server gets new connections

    # -- addresses
    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def url(self):
        return "%s://%s" % (self.scheme, self.endpoint)

    def argv(self):
        peer = "%s://127.0.0.1:%d" % (self.peer_scheme, self.peer_port)
        a = [self.binary, "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.initial_cluster or "%s=%s" % (self.name, peer),
             "--max-request-bytes", str(MAX_REQUEST_BYTES)]
        if self.tls:
            a += ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"]]
        return a + self.extra

    # -- lifecycle
    def start(self, timeout=60):
        """Starts and waits until it serves. On a first start, a port taken in
        the meantime ("address already in use") gets new ports, up to 3 times."""
        fresh = not self.data_dir.exists()
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt == 2 or "address already in use" not in self.log_text(True):
                    raise
                self.kill()
                if self.data_dir.exists() and fresh:
                    shutil.rmtree(self.data_dir)
                if fresh:
                    self.client_port, self.peer_port = free_port(), free_port()
                time.sleep(0.5)

    def _start_once(self, timeout):
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self):
        """Starts the process without waiting for it to serve."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.pop("ETCDCTL_API", None)
        for k in list(env):
            if k.startswith("ETCD_"):
                del env[k]
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        log.close()

    def log_text(self, since_start=False):
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if since_start:
            data = data[self._log_offset:]
        return data.decode("utf-8", "replace")

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before serving; log tail:\n%s" % (
                    self.binary, self.proc.returncode, self.log_text(True)[-4000:]))
            data = self.log_path.read_bytes()[self._log_offset:]
            if READY_LINE in data:
                try:
                    socket.create_connection(("127.0.0.1", self.client_port), 1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("%s not ready after %ss; log tail:\n%s" % (
            self.binary, timeout, self.log_text(True)[-4000:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM and wait; SIGKILL if it does not exit. Returns exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop_cleanly(self, timeout=30):
        """SIGTERM; asserts the process exits by itself, with 0 or by SIGTERM."""
        rc = self.stop(timeout)
        assert rc in (0, -signal.SIGTERM), "%s exited with %s on SIGTERM; log tail:\n%s" % (
            self.binary, rc, self.log_text(True)[-3000:])
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, timeout=60):
        self.stop()
        return self.start(timeout)

    # -- clients
    def etcdctl(self, *args, **kw):
        return etcdctl(self, *args, **kw)

    def channel(self):
        return grpc_channel(self)

    def kv(self):
        return rpc_pb2_grpc.KVStub(self.channel())


def etcdctl(server, *args, input=None, timeout=60, cacert=None):
    """Runs `etcdctl --endpoints=<server> args...`; returns CompletedProcess (text)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    cmd = [ETCDCTL, "--endpoints=" + (server.url if server.tls else server.endpoint),
           "--dial-timeout=5s", "--command-timeout=20s"]
    if cacert:
        cmd.append("--cacert=" + str(cacert))
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True,
                          timeout=timeout, env=env)


def grpc_channel(server, root_cert=None):
    # grpc-core shares connections among channels with equal arguments: a
    # channel made after a restart could pick the old process's connection,
    # which got its GOAWAY, and fail its first call with UNAVAILABLE "GOAWAY
    # received" (seen in CI). The start count keeps them apart.
    opts = [("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.enable_retries", 0),
            ("lskv.test.server_start", getattr(server, "starts", 0))]
    if server.tls:
        with open(root_cert or server.tls["ca"], "rb") as f:
            creds = grpc.ssl_channel_credentials(f.read())
        return grpc.secure_channel(server.endpoint, creds, opts)
    return grpc.insecure_channel(server.endpoint, opts)


def rpc_error(fn, *a, **kw):
    """Calls fn; returns (StatusCode, details) of the RpcError, or (OK, response)."""
    try:
        return grpc.StatusCode.OK, fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


def dir_state(d):
    """{relative path: (mode, sha256 or None)} of every file and directory
    under d: what a refused start must leave as it found it."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            h = None
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, d)] = (st.st_mode, h)
    return out


def assert_serves(server):
    """The server still answers a put + get of a fresh key via etcdctl."""
    key, val = "alive-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    r = server.etcdctl("put", key, val)
    assert r.returncode == 0, "put failed after abuse: %s" % r.stderr
    r = server.etcdctl("get", key, "--print-value-only")
    assert r.returncode == 0 and r.stdout.strip() == val, r.stderr


# ---------------------------------------------------------------- normalizers
MASKED_FIELDS = {"cluster_id", "member_id", "raft_term", "ID", "leader",
                 "raftIndex", "raftTerm", "raftAppliedIndex", "dbSize",
                 "dbSizeInUse", "version"}


def mask_json(obj, fields=frozenset(("cluster_id", "member_id", "raft_term"))):
    if isinstance(obj, dict):
        return {k: ("<masked>" if k in fields else mask_json(v, fields))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_json(v, fields) for v in obj]
    return obj


_WARN_KEEP = ("level", "msg", "error")


def normalize(text, server):
    """Server-independent form of etcdctl output.

    JSON lines lose cluster/member ids and raft terms; clientv3's retry warnings
    keep only level, msg and error (the gRPC code and message); endpoints,
    timings and hex member ids are masked. Revisions are kept.
    """
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("{") or s.startswith("["):
            try:
                obj = json.loads(s)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "caller" in obj and "ts" in obj:
                obj = {k: obj[k] for k in _WARN_KEEP if k in obj}
            if obj is not None:
                line = json.dumps(mask_json(obj), sort_keys=True)
        line = line.replace(server.url, "<URL>").replace(server.endpoint, "<EP>")
        line = re.sub(r"took = [0-9.]+[a-zµ]+", "took = <T>", line)
        line = re.sub(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', r'"\1" : <masked>', line)
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------- fixtures
SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |"
                              r"WARNING: ThreadSanitizer")


@pytest.fixture
def server_factory(tmp_path):
    """make(kind, **kw) -> started Server; all are killed at teardown."""
    started = []

    def make(kind="lskvd", start=True, **kw):
        s = Server(kind, tmp_path / ("%s-%d" % (kind, len(started))), **kw)
        started.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in started:
        s.kill()
    # Data dirs go at once (raft preallocates 64 MiB segments, etcd its WAL:
    # a whole run would otherwise leave gigabytes behind); logs stay.
    for s in started:
        shutil.rmtree(s.data_dir, ignore_errors=True)
    for s in started:
        m = SANITIZER_REPORT.search(s.log_text())
        if m:
            pytest.fail("sanitizer report in %s:\n%s" % (
                s.log_path, s.log_text()[max(0, m.start() - 200):m.start() + 3000]))


class Cluster:
    """n members of one etcd or lskvd cluster on 127.0.0.1, started together."""

    def __init__(self, kind, workdir, n, extra=(), peer_scheme="http"):
        self.members = [Server(kind, Path(workdir) / ("m%d" % (i + 1)), name="m%d" % (i + 1),
                               extra=extra) for i in range(n)]
        ic = ",".join("%s=%s://127.0.0.1:%d" % (m.name, peer_scheme, m.peer_port)
                      for m in self.members)
        for m in self.members:
            m.peer_scheme = peer_scheme
            m.initial_cluster = ic
            m.extra = ["--initial-cluster-token", "tok-%d" % self.members[0].peer_port] + m.extra

    def start(self, timeout=90):
        for m in self.members:
            m.launch()
        for m in self.members:
            m.wait_ready(timeout)
        return self

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def kill(self):
        for m in self.members:
            m.kill()


@pytest.fixture
def cluster_factory(tmp_path):
    """make(kind, n) -> started Cluster; killed and cleaned at teardown."""
    made = []

    def make(kind="lskvd", n=3, start=True, **kw):
        c = Cluster(kind, tmp_path / ("%s-cluster-%d" % (kind, len(made))), n, **kw)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    for c in made:
        c.kill()
    for c in made:
        for s in c.members:
            shutil.rmtree(s.data_dir, ignore_errors=True)
    for c in made:
        for s in c.members:
            m = SANITIZER_REPORT.search(s.log_text())
            if m:
                pytest.fail("sanitizer report in %s:\n%s" % (
                    s.log_path, s.log_text()[max(0, m.start() - 200):m.start() + 3000]))


@pytest.fixture
def etcd(server_factory):
    return server_factory("etcd")


@pytest.fixture
def lskvd(server_factory):
    return server_factory("lskvd")


@pytest.fixture
def pair(etcd, lskvd):
    """(etcd, lskvd): a reference etcd and the server under test, both fresh."""
    return etcd, lskvd


def pytest_report_header(config):
    return "lskv e2e target: %s (%s)" % (TARGET, ETCD if TARGET == "etcd" else LSKVD)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if TARGET != "etcd" and not os.access(LSKVD, os.X_OK):
        # Not a skip: a missing binary must not look like a green run.
        raise pytest.UsageError(
            "lskvd binary %s not found; build it, set LSKVD=..., or run with "
            "LSKV_E2E_TARGET=etcd to check the tests against etcd" % LSKVD)
