"""Patroni on lskvd (issue 9 acceptance), the same run on etcd.

Debian's patroni (3.0.x) with postgresql-15 and two members on one server,
through Patroni's etcd3 DCS, which speaks the JSON gateway (/version,
/v3/cluster/member/list, kv/range, kv/txn, kv/deleterange, lease/grant,
lease/keepalive and the streaming /v3/watch). The first member becomes the
leader, `patronictl list` shows both (leader and a running replica), and
after kill -9 of the leader's Patroni and its postgres, the replica takes
over within ttl + loop_wait (+ a margin). Times are printed for both
targets.

Postgres refuses to run as root: Patroni (and so postgres) runs as the
`postgres` user of the Debian package (created with useradd when missing),
in a directory of its own.
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import free_port

PATRONI = shutil.which("patroni")
PATRONICTL = shutil.which("patronictl")
PG_BIN = "/usr/lib/postgresql/15/bin"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4
# Detection (ttl) + the replica's next HA loop (loop_wait) + its own
# promotion (pg_ctl promote, a checkpoint): generous for a loaded CI box.
FAILOVER_LIMIT_S = TTL + LOOP_WAIT + 10


def _require_packages():
    missing = [n for n, p in (("patroni", PATRONI), ("patronictl", PATRONICTL),
                              ("postgresql-15", PG_BIN + "/postgres"))
               if p is None or not os.path.exists(p)]
    if not missing:
        return
    msg = "not installed: %s (scripts/install-deps.sh installs them)" % ", ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(msg)  # CI installs them: a skip would hide a failure
    pytest.skip(msg)


def _pg_user():
    """(uid, gid) Patroni runs as: postgres, or the caller when not root."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


class Member:
    def __init__(self, root, name, server, uid, gid):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, mode=0o700)
        os.chown(self.dir, uid, gid)
        self.uid, self.gid = uid, gid
        self.rest_port = free_port()
        self.pg_port = free_port()
        self.cfg = os.path.join(root, name + ".yml")
        self.log = os.path.join(root, name + ".log")
        self.proc = None
        cfg = {
            "scope": "lskvtest",
            "namespace": "/service/",
            "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": "127.0.0.1:%d" % self.rest_port,
                        "connect_address": "127.0.0.1:%d" % self.rest_port},
            "etcd3": {"hosts": server.endpoint, "protocol": "http"},
            "bootstrap": {
                "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": False,
                                       "parameters": {"max_connections": 20,
                                                      "shared_buffers": "16MB",
                                                      "wal_level": "replica",
                                                      "hot_standby": "on",
                                                      "max_wal_senders": 5,
                                                      "max_replication_slots": 5}}},
                "initdb": [{"encoding": "UTF8"}, {"auth": "md5"}],
            },
            "postgresql": {
                "listen": "127.0.0.1:%d" % self.pg_port,
                "connect_address": "127.0.0.1:%d" % self.pg_port,
                "data_dir": os.path.join(self.dir, "data"),
                "bin_dir": PG_BIN,
                "pgpass": os.path.join(self.dir, "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "pg-secret"},
                    "replication": {"username": "replicator", "password": "rep-secret"},
                },
                "parameters": {"unix_socket_directories": self.dir,
                               "fsync": "off", "synchronous_commit": "off"},
                "pg_hba": ["local all all trust",
                           "host replication replicator 127.0.0.1/32 md5",
                           "host all all 127.0.0.1/32 md5"],
            },
        }
        with open(self.cfg, "w") as f:
            json.dump(cfg, f, indent=1)  # JSON is YAML
        os.chmod(self.cfg, 0o644)

    def start(self):
        log = open(self.log, "ab")
        kw = {}
        if os.geteuid() == 0:
            kw = {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = dict(os.environ, HOME=self.dir)
        self.proc = subprocess.Popen([PATRONI, self.cfg], stdout=log, stderr=log, env=env,
                                     cwd=self.dir, start_new_session=True, **kw)
        log.close()

    def status(self):
        """Patroni's GET /patroni, or None."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/patroni" % self.rest_port,
                                        timeout=2) as r:
                return json.loads(r.read())
        except Exception as e:  # 503 for a replica still carries the body
            body = getattr(e, "read", None)
            if body is not None:
                try:
                    return json.loads(body())
                except Exception:
                    return None
            return None

    def role(self):
        s = self.status()
        return (s or {}).get("role"), (s or {}).get("state")

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def kill(self):
        """kill -9 of Patroni and of its postgres (a session of its own)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        pid = self.postmaster_pid()
        if pid:
            for target in (lambda: os.killpg(pid, signal.SIGKILL),
                           lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError):
                    pass

    def log_tail(self, n=4000):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""


def _wait(what, cond, timeout, members):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    pytest.fail("timed out waiting for %s\n%s" % (
        what, "\n".join("--- %s log:\n%s" % (m.name, m.log_tail()) for m in members)))


LEADER_ROLES = ("master", "primary")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_patroni_two_members_failover(server_factory, kind):
    _require_packages()
    server = server_factory(kind)
    uid, gid = _pg_user()
    root = tempfile.mkdtemp(prefix="lskv-patroni-")
    os.chmod(root, 0o755)
    members = []
    try:
        t0 = time.monotonic()
        m1 = Member(root, "pg1", server, uid, gid)
        m2 = Member(root, "pg2", server, uid, gid)
        members = [m1, m2]
        m1.start()
        _wait("pg1 to lead", lambda: m1.role()[0] in LEADER_ROLES and m1.role()[1] == "running",
              60, members)
        t_lead = time.monotonic() - t0
        m2.start()
        _wait("pg2 to replicate", lambda: m2.role() == ("replica", "running"), 60, members)
        t_replica = time.monotonic() - t0

        out = subprocess.run([PATRONICTL, "-c", m1.cfg, "list"], capture_output=True,
                             text=True, timeout=30)
        print(out.stdout)
        assert out.returncode == 0, out.stderr
        rows = [ln for ln in out.stdout.splitlines() if "| pg" in ln]
        assert len(rows) == 2, out.stdout
        row = {r.split("|")[1].strip(): r for r in rows}
        assert "Leader" in row["pg1"], out.stdout
        assert "Replica" in row["pg2"], out.stdout
        assert "running" in row["pg2"] or "streaming" in row["pg2"], out.stdout

        kill_at = time.monotonic()
        m1.kill()
        _wait("pg2 to take over", lambda: m2.role()[0] in LEADER_ROLES
              and m2.role()[1] == "running", FAILOVER_LIMIT_S + 20, members)
        failover = time.monotonic() - kill_at
        print("patroni on %s: pg1 leader after %.1f s, pg2 replica after %.1f s, "
              "failover %.1f s (ttl %d, loop_wait %d)"
              % (kind, t_lead, t_replica, failover, TTL, LOOP_WAIT))
        assert failover <= FAILOVER_LIMIT_S, (
            "failover took %.1f s, more than ttl %d + loop_wait %d + margin"
            % (failover, TTL, LOOP_WAIT))
        out = subprocess.run([PATRONICTL, "-c", m2.cfg, "list"], capture_output=True,
                             text=True, timeout=30)
        print(out.stdout)
        assert "Leader" in [r for r in out.stdout.splitlines() if "| pg2" in r][0], out.stdout
    finally:
        for m in members:
            m.kill()
            if os.path.exists(m.log):  # kept beside the server's log
                shutil.copy(m.log, str(server.workdir / ("patroni-%s.log" % m.name)))
        shutil.rmtree(root, ignore_errors=True)
