"""Streaming routes of the JSON gateway (issue 9): POST /v3/watch and
/v3/lease/keepalive, as etcd 3.4's grpc-gateway serves them.

The body is a sequence of JSON request messages; each response message comes
as a line {"result":{...}} as soon as it exists (chunked on HTTP/1.1). What
etcd does, measured with curl and checked here against both servers:
  - watch: created, then events as they happen; the stream stays open after
    the body ends (etcd's watch server keeps its send loop after CloseSend);
  - keepalive: one answer per request, and the answer ends with the body;
  - a malformed first value: a one-shot 500 {"error":...,"code":2} with Go's
    decoder text; a malformed later value ends the request side there;
  - an empty keepalive body: 200 with an empty body.
lskvd-only: HTTP/2 (etcd serves JSON over h2 only with TLS), a client that
goes away frees its stream, a client that does not read is cut off.
"""
import base64
import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import lskvd_only

KINDS = ["etcd", "lskvd"]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def post(server, path, body, timeout=10):
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def open_stream(server, path, body, timeout=5):
    """(connection, response) of a streaming POST; body is bytes or str."""
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=timeout)
    conn.request("POST", path, body=body if isinstance(body, bytes) else body.encode(),
                 headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def read_result(resp):
    line = resp.readline()
    assert line.endswith(b"\n"), line
    obj = json.loads(line)
    assert list(obj) == ["result"], obj
    return obj["result"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefix", ["/v3", "/v3beta"])
def test_watch_created_events_and_open_after_body(server_factory, kind, prefix):
    s = server_factory(kind)
    conn, resp = open_stream(s, prefix + "/watch",
                             json.dumps({"create_request": {"key": b64("foo")}}))
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Grpc-Metadata-Content-Type") == "application/grpc"
    created = read_result(resp)
    assert created["created"] is True
    assert set(created["header"]) >= {"cluster_id", "member_id", "revision", "raft_term"}
    for i in range(3):
        post(s, "/v3/kv/put", {"key": b64("foo"), "value": b64("v%d" % i)})
        ev = read_result(resp)
        kv = ev["events"][0]["kv"]
        assert (kv["key"], kv["value"]) == (b64("foo"), b64("v%d" % i))
        assert "type" not in ev["events"][0]  # PUT is the zero value
    post(s, "/v3/kv/deleterange", {"key": b64("foo")})
    ev = read_result(resp)
    assert ev["events"][0]["type"] == "DELETE"
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_watch_create_and_cancel_in_one_body(server_factory, kind):
    s = server_factory(kind)
    body = (json.dumps({"create_request": {"key": b64("a"), "range_end": b64("b")}}) + "\n" +
            json.dumps({"cancel_request": {"watch_id": "0"}}))
    conn, resp = open_stream(s, "/v3/watch", body)
    assert read_result(resp)["created"] is True
    canceled = read_result(resp)
    assert canceled["canceled"] is True
    assert "watch_id" not in canceled  # id 0 is the zero value
    conn.close()


class ChunkedStream:
    """A POST whose body is sent in chunks while answers are read."""

    def __init__(self, server, path):
        self.sock = socket.create_connection(("127.0.0.1", server.client_port), timeout=5)
        self.sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n" % path).encode())
        self.buf = b""
        self.head = None

    def send(self, text):
        data = text.encode()
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def result(self):
        """The next {"result":...} line (chunk framing stripped)."""
        while self.head is None:
            if b"\r\n\r\n" in self.buf:
                self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            else:
                self._fill()
        while True:
            if b"\r\n" in self.buf:
                size, rest = self.buf.split(b"\r\n", 1)
                n = int(size, 16)
                if len(rest) >= n + 2:
                    self.buf = rest[n + 2:]
                    if n == 0:
                        return None  # the end of the answer
                    return json.loads(rest[:n])["result"]
            self._fill()


@lskvd_only
def test_body_values_go_as_they_arrive(server_factory):
    """Each value is sent when it is complete, not at the end of the body
    (Go's decoder goroutine): a watch created, then cancelled later in the
    same request; keepalives answered one by one. lskvd only: etcd's
    HTTP/1.1 server is not full duplex; before its first response write it
    consumes the rest of the request body (net/http maxPostHandlerReadBytes),
    so over HTTP/1.1 etcd answers nothing until the body has ended (measured
    with chunked bodies: every answer came after the final chunk)."""
    s = server_factory("lskvd")
    w = ChunkedStream(s, "/v3/watch")
    w.send(json.dumps({"create_request": {"key": b64("i")}}))
    assert w.result()["created"] is True
    post(s, "/v3/kv/put", {"key": b64("i"), "value": b64("1")})
    assert w.result()["events"][0]["kv"]["value"] == b64("1")
    w.send('{"cancel_r')  # a value in two pieces
    w.send('equest":{"watch_id":"0"}}')
    assert w.result()["canceled"] is True
    w.send("")  # the body ends; the watch stream stays (etcd)
    w.sock.settimeout(1)
    with pytest.raises((socket.timeout, TimeoutError)):
        w.result()
    w.sock.close()
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    k = ChunkedStream(s, "/v3/lease/keepalive")
    for _ in range(3):
        k.send('{"ID":"%s"}\n' % lease)
        assert k.result()["TTL"] == "30"
    k.send("")
    assert k.result() is None  # keepalive ends with the body
    k.sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_keepalive_answers_each_and_ends_with_body(server_factory, kind):
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    # A number and a quoted number, concatenated and newline-separated.
    body = '{"ID":%s}{"ID":"%s"}\n{"ID":%s}\n' % (lease, lease, lease)
    conn, resp = open_stream(s, "/v3/lease/keepalive", body)
    assert resp.status == 200
    assert resp.getheader("Grpc-Metadata-Content-Type") == "application/grpc"
    text = resp.read()  # the stream ends with the body
    lines = text.decode().splitlines()
    assert len(lines) == 3, text
    for ln in lines:
        r = json.loads(ln)["result"]
        assert r["ID"] == lease and r["TTL"] == "30"
    conn.close()
    # Unknown lease: TTL 0 is omitted, as etcd does.
    conn, resp = open_stream(s, "/v3/lease/keepalive", '{"ID":12345}')
    r = json.loads(resp.read())["result"]
    assert r["ID"] == "12345" and "TTL" not in r
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_keepalive_with_curl(server_factory, kind):
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 20})["ID"]
    out = subprocess.run(["curl", "-N", "-s", "-X", "POST", "-d", '{"ID":"%s"}' % lease,
                          s.url + "/v3/lease/keepalive"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0
    assert out.stdout.endswith(b"}}\n"), out.stdout
    assert json.loads(out.stdout)["result"]["TTL"] == "20"


@pytest.mark.parametrize("kind", KINDS)
def test_watch_with_curl_sees_events(server_factory, kind):
    s = server_factory(kind)
    p = subprocess.Popen(["curl", "-N", "-s", "--max-time", "3", "-X", "POST", "-d",
                          json.dumps({"create_request": {"key": b64("k")}}),
                          s.url + "/v3/watch"], stdout=subprocess.PIPE)
    first = p.stdout.readline()
    assert json.loads(first)["result"]["created"] is True
    post(s, "/v3/kv/put", {"key": b64("k"), "value": b64("1")})
    ev = json.loads(p.stdout.readline())["result"]
    assert ev["events"][0]["kv"]["value"] == b64("1")
    p.wait(timeout=10)
    assert p.returncode == 28  # still open when curl gave up: the stream stays


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/v3/watch", "/v3/lease/keepalive"])
@pytest.mark.parametrize("body,message", [
    ('{"ID":', "unexpected EOF"),
    ("xx", "invalid character 'x' looking for beginning of value"),
    ("[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"),
])
def test_malformed_first_value_is_a_one_shot_error(server_factory, kind, path, body, message):
    s = server_factory(kind)
    conn, resp = open_stream(s, path, body)
    assert resp.status == 500
    assert resp.getheader("Content-Length") is not None
    assert json.loads(resp.read()) == {"error": message, "message": message, "code": 2}
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_later_value_ends_the_request_side(server_factory, kind):
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    conn, resp = open_stream(s, "/v3/lease/keepalive",
                             '{"ID":%s} xx {"ID":%s}' % (lease, lease))
    lines = resp.read().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["result"]["ID"] == lease
    conn.close()
    # Watch: created, and the stream stays open (events still come).
    conn, resp = open_stream(s, "/v3/watch",
                             json.dumps({"create_request": {"key": b64("m")}}) + "}{")
    assert read_result(resp)["created"] is True
    post(s, "/v3/kv/put", {"key": b64("m"), "value": b64("x")})
    assert read_result(resp)["events"][0]["kv"]["key"] == b64("m")
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_empty_keepalive_body(server_factory, kind):
    s = server_factory(kind)
    conn, resp = open_stream(s, "/v3/lease/keepalive", b"")
    assert resp.status == 200
    assert resp.read() == b""
    assert resp.getheader("Grpc-Metadata-Content-Type") is None
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_http10_stream_until_close(server_factory, kind):
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    body = '{"ID":%s}' % lease
    with socket.create_connection(("127.0.0.1", s.client_port), timeout=5) as c:
        c.sendall(("POST /v3/lease/keepalive HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(body), body)).encode())
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert json.loads(rest)["result"]["ID"] == lease


def metric(server, name):
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + " "):
                return float(ln.split()[1])
    return None


def wait_metric(server, name, want, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(server, name) == want:
            return
        time.sleep(0.1)
    assert metric(server, name) == want


@pytest.mark.parametrize("kind", KINDS)
def test_client_disconnect_frees_streams(server_factory, kind):
    s = server_factory(kind)
    conns = []
    for i in range(40):
        conn, resp = open_stream(s, "/v3/watch",
                                 json.dumps({"create_request": {"key": b64("d%d" % i)}}))
        assert read_result(resp)["created"] is True
        conns.append(conn)
    if not s.is_etcd:
        assert metric(s, "etcd_debugging_mvcc_watch_stream_total") == 40
    for c in conns:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # a reset, as a killed client
    if not s.is_etcd:
        wait_metric(s, "etcd_debugging_mvcc_watch_stream_total", 0)
        wait_metric(s, "etcd_debugging_mvcc_watcher_total", 0)
    # Still serving, streams too.
    post(s, "/v3/kv/put", {"key": b64("d0"), "value": b64("x")})
    conn, resp = open_stream(s, "/v3/watch", json.dumps({"create_request": {"key": b64("z")}}))
    assert read_result(resp)["created"] is True
    conn.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


@pytest.mark.parametrize("kind", KINDS)
def test_client_that_does_not_read_gets_backpressure(server_factory, kind):
    """A body of 10^5 keepalives from a client that reads nothing for a
    while: the answer is ~65 times the body. The server reads the body as it
    comes and stops reading while its answers are not taken (TCP
    backpressure), so its memory stays bounded; once the client reads, every
    answer comes, as with etcd."""
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    one = '{"ID":%s}' % lease
    n = 100000
    body = (one * n).encode()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(60)
    c.connect(("127.0.0.1", s.client_port))
    before = rss_kib(s.proc.pid)
    sender = threading.Thread(target=c.sendall, args=(
        b"POST /v3/lease/keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        % len(body) + body,))
    sender.start()
    time.sleep(2.0)
    grown = rss_kib(s.proc.pid) - before
    data = bytearray()
    while True:
        chunk = c.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\r\n0\r\n\r\n"):
            break
    sender.join()
    c.close()
    assert data.count(b'"result"') == n
    print("%s: RSS grew %d KiB while %d answers (%d MB) were owed" % (
        kind, grown, n, len(data) >> 20))
    with open("/proc/%d/maps" % s.proc.pid) as f:
        asan = "libasan" in f.read()  # its quarantine keeps freed memory
    if not s.is_etcd and not asan:
        assert grown < 48 * 1024, grown  # 4 MiB socket high water + 8 MiB stream bound


@lskvd_only
def test_http2_watch_and_keepalive(server_factory):
    s = server_factory("lskvd")
    lease = post(s, "/v3/lease/grant", {"TTL": 30})["ID"]
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-X", "POST", "-d",
                          '{"ID":%s}\n{"ID":%s}' % (lease, lease),
                          s.url + "/v3/lease/keepalive"], capture_output=True, timeout=10)
    assert out.returncode == 0
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["result"]["TTL"] == "30" for x in lines)
    p = subprocess.Popen(["curl", "-N", "-s", "--http2-prior-knowledge", "--max-time", "3",
                          "-X", "POST", "-d", json.dumps({"create_request": {"key": b64("h")}}),
                          s.url + "/v3/watch"], stdout=subprocess.PIPE)
    assert json.loads(p.stdout.readline())["result"]["created"] is True
    post(s, "/v3/kv/put", {"key": b64("h"), "value": b64("2")})
    ev = json.loads(p.stdout.readline())["result"]
    assert ev["events"][0]["kv"]["value"] == b64("2")
    assert metric(s, "etcd_debugging_mvcc_watch_stream_total") == 1
    p.wait(timeout=10)  # curl gives up: the stream is reset
    wait_metric(s, "etcd_debugging_mvcc_watch_stream_total", 0)
    # Malformed first value over h2: the same one-shot error.
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-X", "POST", "-d", "xx",
                          "-w", "\n%{http_code}", s.url + "/v3/watch"],
                         capture_output=True, timeout=10)
    body, code = out.stdout.decode().rsplit("\n", 1)
    assert code == "500" and json.loads(body)["code"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_server_streaming_route(server_factory, kind):
    """maintenance/snapshot is server-streaming: one request value (an empty
    body is an empty request, a malformed one 400 code 3); both stream the
    snapshot (lskvd's own backup, docs/backup-format.md)."""
    s = server_factory(kind)
    conn, resp = open_stream(s, "/v3/maintenance/snapshot", "xx")
    msg = "invalid character 'x' looking for beginning of value"
    assert resp.status == 400
    assert json.loads(resp.read()) == {"error": msg, "message": msg, "code": 3}
    conn.close()
    conn, resp = open_stream(s, "/v3/maintenance/snapshot", b"")
    assert resp.status == 200
    assert "blob" in read_result(resp)
    conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_election_observe_streams_each_leader(server_factory, kind):
    """/v3/election/observe (server-streaming): the current leader's key at
    once, then each new value a Proclaim sets, as {"result": ...} lines."""
    s = server_factory(kind)
    lease = post(s, "/v3/lease/grant", {"TTL": 60})["ID"]
    leader = post(s, "/v3/election/campaign", {"name": b64("el"), "lease": lease,
                                               "value": b64("v1")})["leader"]
    conn, resp = open_stream(s, "/v3/election/observe", json.dumps({"name": b64("el")}))
    assert resp.status == 200
    first = read_result(resp)
    assert base64.b64decode(first["kv"]["value"]) == b"v1"
    assert base64.b64decode(first["kv"]["key"]) == base64.b64decode(leader["key"])
    post(s, "/v3/election/proclaim", {"leader": leader, "value": b64("v2")})
    second = read_result(resp)
    assert base64.b64decode(second["kv"]["value"]) == b"v2"
    assert int(second["kv"]["mod_revision"]) > int(first["kv"]["mod_revision"])
    conn.close()
