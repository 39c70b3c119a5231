"""Connections end in order, never with a reset (issue 8 point 8): when lskvd
closes a connection (the client said GOAWAY, or the server shuts down) it
writes what it has queued, sends FIN and drops what the client still sends,
so a client that is still reading sees EOF, not ECONNRESET. (etcd 3.4 resets
the first case: it closes right after the GOAWAYs, and the lagging client's
frames then meet a closed socket; grpc-js clients see that as a stray
ECONNRESET.)"""
import signal
import socket
import struct
import time

from conftest import lskvd_only

pytestmark = lskvd_only

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


SETTINGS, SETTINGS_ACK = frame(4, 0, 0), frame(4, 1, 0)
PING = frame(6, 0, 0, b"12345678")
GOAWAY = frame(7, 0, 0, struct.pack(">II", 0, 0))


def connect(server):
    s = socket.create_connection(("127.0.0.1", server.client_port), timeout=5)
    s.sendall(PREFACE + SETTINGS)
    s.recv(65536)  # the server's SETTINGS
    s.sendall(SETTINGS_ACK)
    return s


def read_to_end(s, nudge=None, seconds=3):
    """Reads until EOF; meanwhile sends nudge (frames a lagging client still
    sends) now and then. Returns 'eof' or 'reset'."""
    deadline = time.time() + seconds
    s.settimeout(0.05)
    while time.time() < deadline:
        try:
            if nudge:
                s.sendall(nudge)
            if s.recv(65536) == b"":
                return "eof"
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
    return "open"


def test_client_goaway_then_lagging_frames_see_eof(server_factory):
    server = server_factory("lskvd")
    outcomes = []
    for _ in range(20):
        s = connect(server)
        # GOAWAY, then frames the client still had in flight: the server
        # closes while some of them are unread in its socket
        s.sendall(GOAWAY + PING * 64)
        outcomes.append(read_to_end(s, nudge=PING * 64))
        s.close()
    assert "reset" not in outcomes, outcomes


def test_server_shutdown_ends_busy_connections_with_eof(server_factory):
    """Clients keep sending while lskvd shuts down: each sees the GOAWAY and
    then EOF, never a reset."""
    server = server_factory("lskvd")
    conns = [connect(server) for _ in range(5)]
    for s in conns:
        s.sendall(PING * 64)
    server.proc.send_signal(signal.SIGTERM)
    outcomes = []
    for s in conns:
        outcomes.append(read_to_end(s, nudge=PING * 8))
    assert outcomes == ["eof"] * 5, outcomes
    assert server.proc.wait(10) in (0, -signal.SIGTERM)


def test_stalled_handshakes_are_closed_and_working_clients_are_not(server_factory):
    """Connections that sent only part of the HTTP/2 preface (or nothing) are
    closed after the handshake timeout (10 s, h2.c note 7), with EOF; a
    client that completed its preface and then idles is kept."""
    server = server_factory("lskvd")
    stalled = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", server.client_port), timeout=5)
        if i % 2:
            s.sendall(PREFACE[:16])
        stalled.append(s)
    idle = connect(server)  # full preface + SETTINGS exchanged
    time.sleep(12)
    assert [read_to_end(s, seconds=2) for s in stalled] == ["eof"] * 40
    idle.sendall(PING)
    idle.settimeout(5)
    assert idle.recv(65536) != b"", "an idle HTTP/2 connection was closed"
    for s in stalled + [idle]:
        s.close()
