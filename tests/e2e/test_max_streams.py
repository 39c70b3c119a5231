"""--max-concurrent-streams (etcd's flag) on lskvd and Debian etcd 3.4 side
by side: each client connection's HTTP/2 SETTINGS carry the limit, and the
JSON gateway (in etcd one gRPC client connection of its own server) runs at
most that many calls at once: with the limit taken by open watch streams a
gateway range waits, and goes on once a watch ends."""
import http.client
import json
import re
import socket
import subprocess
import threading
import time

import pytest


def open_watch(server, key):
    """A gateway watch stream held open; returns the connection."""
    c = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=30)
    body = json.dumps({"create_request": {"key": "a2V5"}})
    c.putrequest("POST", "/v3/watch")
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    c.send(b"%x\r\n%s\r\n" % (len(body), body.encode()))
    return c


def gateway_range(server, timeout):
    """The answer's revision field, or None when it did not come in time."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=timeout)
        c.request("POST", "/v3/kv/range", body=json.dumps({"key": "a2V5"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        return out["header"]["revision"]
    except (socket.timeout, TimeoutError):
        return None


def settings_max_streams(server, tmp_path):
    """The limit in the SETTINGS a gRPC client connection gets (a gRPC
    request: etcd's port hands other HTTP/2 to another server)."""
    body = tmp_path / "empty-grpc-message"
    body.write_bytes(b"\0\0\0\0\0")
    r = subprocess.run(["nghttp", "-nv", "-H", "content-type: application/grpc",
                        "-H", "te: trailers", "-d", str(body),
                        "http://127.0.0.1:%d/etcdserverpb.Maintenance/Status" % server.client_port],
                       capture_output=True, text=True, timeout=20)
    m = re.search(r"recv SETTINGS frame[^\n]*\n(?:[ \t]+[^\n]*\n)*?"
                  r"[ \t]+\[SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):(\d+)\]", r.stdout)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_the_limit_goes_in_settings_and_paces_the_gateway(server_factory, kind, tmp_path):
    s = server_factory(kind, extra=["--max-concurrent-streams", "3"])
    assert settings_max_streams(s, tmp_path) == 3
    assert s.etcdctl("put", "key", "v").returncode == 0
    watches = [open_watch(s, "key") for _ in range(2)]
    time.sleep(1)
    # Two of three in use: a range goes through.
    assert gateway_range(s, 5) is not None
    watches.append(open_watch(s, "key"))
    time.sleep(1)
    # All three in use: a range waits (curl's "Operation timed out" in
    # etcd's TestV3Curl_MaxStreams_ReachLimit).
    assert gateway_range(s, 2) is None
    # Once a watch ends, a waiting range goes on.
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("rev", gateway_range(s, 20)))
    t.start()
    time.sleep(1)
    assert "rev" not in done
    watches.pop().close()
    t.join(25)
    assert done.get("rev") is not None
    for w in watches:
        w.close()


def test_etcds_default_is_lskvds_bound_and_more_is_refused(server_factory, tmp_path):
    s = server_factory("lskvd", extra=["--max-concurrent-streams", "4294967295"])
    assert settings_max_streams(s, tmp_path) == 4096
    s.kill()
    bad = server_factory("lskvd", start=False, extra=["--max-concurrent-streams", "5000"])
    bad.launch()
    assert bad.proc.wait(30) != 0
    assert "--max-concurrent-streams=5000: lskvd allows at most 4096" in bad.log_text()
