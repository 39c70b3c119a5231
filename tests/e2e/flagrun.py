"""Start etcd or lskvd with exactly the flags and environment a test gives
(conftest's Server passes its own set and drops ETCD_* variables), wait for
"ready to serve client requests" and read ids back through etcdctl."""
import json
import os
import signal
import subprocess
import time

from conftest import ETCDCTL, READY_LINE, SANITIZER_REPORT, free_port  # noqa: F401


class Proc:
    def __init__(self, binary, args, workdir, env_extra=None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        env.update(env_extra or {})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([binary] + list(args), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)

    def log(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if READY_LINE in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("exited with %s:\n%s" % (self.proc.returncode,
                                                            self.log()[-3000:]))
            time.sleep(0.05)
        raise RuntimeError("not ready:\n" + self.log()[-3000:])

    def wait_exit(self, timeout=60):
        """The exit code of a process expected to refuse to start."""
        rc = self.proc.wait(timeout)
        self.check_sanitizers()
        return rc

    def check_sanitizers(self):
        m = SANITIZER_REPORT.search(self.log())
        assert m is None, "sanitizer report in %s:\n%s" % (self.log_path,
                                                           self.log()[m.start():][:3000])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.check_sanitizers()


def ctl(endpoint, *args, tls_skip_verify=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=5s", "--command-timeout=20s"]
    if tls_skip_verify:
        cmd += ["--insecure-transport=false", "--insecure-skip-tls-verify"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=env)


def ids(endpoint, **kw):
    """(cluster id, member id, [(id, name, peerURLs)]) from member list and
    endpoint status, as hex strings."""
    r = ctl(endpoint, "member", "list", "-w", "json", **kw)
    assert r.returncode == 0, r.stderr
    ml = json.loads(r.stdout)
    r = ctl(endpoint, "endpoint", "status", "-w", "json", **kw)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)[0]["Status"]
    assert st["header"]["cluster_id"] == ml["header"]["cluster_id"]
    members = [("%016x" % m["ID"], m.get("name", ""), m["peerURLs"]) for m in ml["members"]]
    return ("%016x" % ml["header"]["cluster_id"], "%016x" % st["header"]["member_id"], members)
