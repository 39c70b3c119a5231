"""Clusters whose members each run in a network namespace the test creates.

Layout (one per NetCluster, names unique per run so parallel runs don't clash):

    root namespace: bridge lk<id>br, address 10.77.<net>.254/24 (the clients)
      veth lk<id>h<i>  <->  eth0 in namespace lk<id>m<i>, address 10.77.<net>.<i>/24

Every member listens on its own address with the same ports (2379 clients,
2380 peers). Clients (etcdctl, python3-etcd3, grpc) run in the root namespace
and reach members by their addresses. A partition puts blackhole routes for
the other side's addresses in each member namespace, both directions; the
clients' address stays reachable from everyone. Processes are started with
`ip netns exec`, which execs the server, so the pid is the server's and
kill -9 reaches it. teardown() (also at interpreter exit) kills every member
and deletes the namespaces and the bridge even when a test fails.

Needs root and iproute2 (`ip`); netns_available() says whether namespaces
work here.
"""
import atexit
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from conftest import ETCD, ETCDCTL, LSKVD, READY_LINE, MAX_REQUEST_BYTES

CLIENT_PORT, PEER_PORT = 2379, 2380
# LSKV_E2E_CORES=1: members may dump core into their work dir (core_pattern
# permitting) so that a crash can be looked at with gdb.
CORES = os.environ.get("LSKV_E2E_CORES") == "1"


def _allow_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def sh(*args, check=True):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(map(str, args)), r.stderr.strip()))
    return r


def netns_available():
    """True if this process may create network namespaces (root, ip, kernel)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = "lkprobe%s" % uuid.uuid4().hex[:6]
    if sh("ip", "netns", "add", name, check=False).returncode != 0:
        return False
    sh("ip", "netns", "del", name, check=False)
    return True


def _free_subnet():
    """A 10.77.N.0/24 no route in the root namespace uses yet."""
    used = sh("ip", "-4", "route", "show").stdout
    for _ in range(100):
        n = random.randint(1, 250)
        if "10.77.%d." % n not in used:
            return n
    raise RuntimeError("no free 10.77.N.0/24 subnet")


class Member:
    """One etcd or lskvd in its own namespace with its own data dir."""

    def __init__(self, cluster, index, workdir):
        self.cluster = cluster
        self.index = index            # 1-based: address 10.77.<net>.<index>
        self.name = "m%d" % index
        self.ns = "%sm%d" % (cluster.prefix, index)
        self.addr = "10.77.%d.%d" % (cluster.net, index)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self.proc = None
        self.joins_existing = False  # next start: a member MemberAdd added
        self.last_status_error = None
        self.starts = 0
        self._log_offset = 0

    @property
    def endpoint(self):
        return "%s:%d" % (self.addr, CLIENT_PORT)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.addr, PEER_PORT)

    @property
    def tls(self):  # conftest.grpc_channel looks at it
        return None

    def argv(self):
        c = self.cluster
        url = "http://" + self.endpoint
        a = [c.binary, "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", c.initial_cluster, "--initial-cluster-token", c.token,
             "--max-request-bytes", str(MAX_REQUEST_BYTES)]
        if self.joins_existing:
            a += ["--initial-cluster-state", "existing"]
        return a + list(c.extra)

    def launch(self):
        assert not self.alive()
        self.starts += 1
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ETCD_") and k != "ETCDCTL_API"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns] + self.argv(),
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, cwd=self.workdir,
                                         preexec_fn=_allow_core if CORES else None)

    def log_text(self, since_start=False):
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_offset if since_start else 0:].decode("utf-8", "replace")

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before serving; log tail:\n%s" % (
                    self.name, self.proc.returncode, self.log_text(True)[-4000:]))
            if READY_LINE in self.log_path.read_bytes()[self._log_offset:]:
                try:
                    socket.create_connection((self.addr, CLIENT_PORT), 1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready after %ss; log tail:\n%s" % (
            self.name, timeout, self.log_text(True)[-4000:]))

    def start(self, timeout=60):
        self.launch()
        self.wait_ready(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """kill -9."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=20):
        """SIGTERM, SIGKILL if it does not exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self, timeout=60):
        self.stop()
        return self.start(timeout)

    def etcdctl(self, *args, timeout=30):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        cmd = [ETCDCTL, "--endpoints=" + self.endpoint, "--dial-timeout=2s",
               "--command-timeout=5s"] + [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    def status(self):
        """etcdctl endpoint status as a dict, or None if it does not answer."""
        r = self.etcdctl("endpoint", "status", "-w", "json", timeout=15)
        if r.returncode != 0:
            self.last_status_error = r.stderr.strip()[-300:]
            return None
        return json.loads(r.stdout)[0]["Status"]


_live = []


@atexit.register
def _teardown_all():
    for c in list(_live):
        c.teardown()


class NetCluster:
    """n members of one etcd or lskvd cluster, each in its own namespace."""

    def __init__(self, kind, workdir, n=3, extra=()):
        assert kind in ("etcd", "lskvd")
        self.kind = kind
        self.binary = ETCD if kind == "etcd" else LSKVD
        self.prefix = "lk%s" % uuid.uuid4().hex[:5]  # <= 15 chars with suffixes
        self.bridge = self.prefix + "br"
        self.extra = list(extra)
        self.token = "tok-" + self.prefix
        self.partitioned = []  # (ns, addr) blackhole routes in place
        self._made = False
        self.net = None
        self.members = []
        self.workdir = Path(workdir)
        self.n = n

    # -- network
    def setup(self):
        _live.append(self)
        self._made = True
        self.net = _free_subnet()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", "10.77.%d.254/24" % self.net, "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
            m = Member(self, i, self.workdir / ("m%d" % i))
            host = "%sh%d" % (self.prefix, i)
            sh("ip", "netns", "add", m.ns)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", m.ns)
            sh("ip", "link", "set", host, "master", self.bridge)
            sh("ip", "link", "set", host, "up")
            sh("ip", "-n", m.ns, "addr", "add", m.addr + "/24", "dev", "eth0")
            sh("ip", "-n", m.ns, "link", "set", "eth0", "up")
            sh("ip", "-n", m.ns, "link", "set", "lo", "up")
            self.members.append(m)
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        return self

    def teardown(self):
        for m in self.members:
            m.kill()
        if self._made:
            for m in self.members:
                # Deleting the host end takes the pair along at once (the
                # namespace itself may linger while the kernel cleans up).
                sh("ip", "link", "del", "%sh%d" % (self.prefix, m.index), check=False)
                sh("ip", "netns", "del", m.ns, check=False)
            sh("ip", "link", "del", self.bridge, check=False)
            self._made = False
        if self in _live:
            _live.remove(self)

    def partition(self, side):
        """Cuts the members in side from all the others, both directions."""
        side = list(side)
        other = [m for m in self.members if m not in side]
        for a, bs in [(x, other) for x in side] + [(y, side) for y in other]:
            for b in bs:
                sh("ip", "-n", a.ns, "route", "add", "blackhole", b.addr + "/32")
                self.partitioned.append((a.ns, b.addr))

    def heal(self):
        for ns, addr in self.partitioned:
            sh("ip", "-n", ns, "route", "del", "blackhole", addr + "/32", check=False)
        self.partitioned = []

    # -- processes
    def start(self, timeout=90):
        for m in self.members:
            m.launch()
        for m in self.members:
            m.wait_ready(timeout)
        return self

    def leader(self, among=None, timeout=30):
        """The member that says it leads and whose leader id is its own
        (among the given members, default all alive ones); waits for one."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in among or self.members:
                if not m.alive():
                    continue
                st = m.status()
                if st and st.get("leader") == st["header"]["member_id"]:
                    return m
            time.sleep(0.1)
        raise AssertionError("no leader among %s after %ss" % (
            [m.name for m in (among or self.members)], timeout))

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)
