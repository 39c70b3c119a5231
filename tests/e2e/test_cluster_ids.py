"""Member and cluster ids as etcd 3.4 derives them (SHA-1 of the sorted peer
URLs and --initial-cluster-token; of the sorted member ids): lskvd and etcd
started with the same flags (one after the other: lskvd binds its advertised
peer URL) show the same ids in `etcdctl member list` and `endpoint status`.
The 3-member derivation is checked in tests/unit/test_members.c against ids
measured on a 3-member etcd (and end to end in test_cluster.py); one member
of three started alone serves nothing."""
import socket
import time

import pytest

from conftest import ETCD, LSKVD, TARGET
from flagrun import Proc, ctl, free_port, ids


def run_both(tmp_path, make_args, env=None, also=None):
    """ids (and also(peer port), if given) of etcd then lskvd with the flags."""
    out = {}
    peer = free_port()
    for kind, binary in (("etcd", ETCD), ("lskvd", LSKVD)):
        client = free_port()
        p = Proc(binary, make_args(client, peer, tmp_path / kind / "data"), tmp_path / kind,
                 env)
        try:
            p.wait_ready()
            out[kind] = ids("127.0.0.1:%d" % client)
            if also is not None:
                out[kind] = (out[kind], also(peer))
        finally:
            p.stop()
    out["peer"] = peer
    return out


def common(client, peer_host, peer, data):
    return ["--data-dir", str(data),
            "--listen-client-urls", "http://127.0.0.1:%d" % client,
            "--advertise-client-urls", "http://127.0.0.1:%d" % client,
            "--listen-peer-urls", "http://%s:%d" % (peer_host, peer),
            "--initial-advertise-peer-urls", "http://%s:%d" % (peer_host, peer)]


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_name_only_on_a_localhost_peer_url(tmp_path):
    """--name alone: etcd's --initial-cluster is name=advertised peer URLs,
    the token "etcd-cluster"; here on a localhost URL."""
    got = run_both(tmp_path, lambda c, p, d: common(c, "localhost", p, d) + ["--name", "n-l"])
    assert got["lskvd"] == got["etcd"]
    assert got["etcd"][2][0][1:] == ("n-l", ["http://localhost:%s" % got["peer"]])


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_default_name_keeps_etcds_default_cluster(tmp_path):
    """The default name keeps default=http://localhost:2380: another
    advertised peer URL is refused, with etcd's text."""
    peer = free_port()
    texts = {}
    for kind, binary in (("etcd", ETCD), ("lskvd", LSKVD)):
        p = Proc(binary, common(free_port(), "127.0.0.1", peer, tmp_path / kind / "data"),
                 tmp_path / kind)
        assert p.wait_exit() != 0
        texts[kind] = p.log()
    want = ("--initial-cluster has default=http://localhost:2380 but missing from "
            "--initial-advertise-peer-urls=http://127.0.0.1:%d (resolved urls: "
            "\"http://127.0.0.1:%d\" != \"http://localhost:2380\")" % (peer, peer))
    assert want in texts["etcd"]
    assert want in texts["lskvd"]


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_token_and_initial_cluster_give_etcds_ids(tmp_path):
    def args(c, p, d):
        return common(c, "127.0.0.1", p, d) + [
            "--name", "node-a", "--initial-cluster-token", "lskv-ids-test",
            "--initial-cluster", "node-a=http://127.0.0.1:%d" % p]
    got = run_both(tmp_path, args)
    assert got["lskvd"] == got["etcd"]
    # and the token matters
    plain = run_both(tmp_path / "plain", lambda c, p, d: common(c, "127.0.0.1", p, d) + [
        "--name", "node-a"])
    assert plain["lskvd"][:2] != got["lskvd"][:2]


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_initial_cluster_matches_the_advertised_url_once_resolved(tmp_path):
    """--initial-cluster names this machine, --initial-advertise-peer-urls
    its address: etcd resolves the name and takes the id from
    --initial-cluster's string (localhost and IPs it leaves as they are)."""
    host = socket.gethostname()
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        pytest.skip("this machine's name does not resolve")

    def args(c, p, d):
        a = common(c, "127.0.0.1", p, d) + [
            "--name", "r", "--initial-cluster", "r=http://%s:%d" % (host, p)]
        a[a.index("--initial-advertise-peer-urls") + 1] = "http://%s:%d" % (ip, p)
        a[a.index("--listen-peer-urls") + 1] = "http://%s:%d" % (ip, p)
        return a
    got = run_both(tmp_path, args)
    assert got["lskvd"] == got["etcd"]
    assert got["lskvd"][2][0][2] == ["http://%s:%d" % (host, got["peer"])]


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_a_member_with_two_peer_urls(tmp_path):
    """A name repeated in --initial-cluster: one member, its URLs sorted
    (the advertised ones given in the other order)."""
    second = free_port()

    def args(c, p, d):
        a = common(c, "127.0.0.1", p, d) + [
            "--name", "two", "--initial-cluster-token", "tok2",
            "--initial-cluster", "two=http://127.0.0.1:%d,two=http://127.0.0.1:%d" % (
                second, p)]
        both = "http://127.0.0.1:%d,http://127.0.0.1:%d" % (p, second)
        a[a.index("--initial-advertise-peer-urls") + 1] = both
        a[a.index("--listen-peer-urls") + 1] = both
        return a
    def listening(p):  # etcd listens on every --listen-peer-urls URL
        out = []
        for port in (p, second):
            try:
                socket.create_connection(("127.0.0.1", port), 2).close()
                out.append(True)
            except OSError:
                out.append(False)
        return out
    got = run_both(tmp_path, args, also=listening)
    assert got["lskvd"] == got["etcd"]
    assert len(got["lskvd"][0][2][0][2]) == 2
    assert got["lskvd"][1] == [True, True]


@pytest.mark.skipif(TARGET == "etcd", reason="compares lskvd with etcd")
def test_ids_from_etcd_environment_variables(tmp_path):
    env = {"ETCD_NAME": "env-node", "ETCD_INITIAL_CLUSTER_TOKEN": "from-env"}
    got = run_both(tmp_path, lambda c, p, d: common(c, "127.0.0.1", p, d), env)
    assert got["lskvd"] == got["etcd"]
    assert got["lskvd"][2][0][1] == "env-node"


@pytest.mark.parametrize("who", ["m1", "m2", "m3"])
def test_a_member_of_three_started_alone_serves_nothing(tmp_path, who):
    """Any one member of a 3-member --initial-cluster started without its
    peers (the founder, or a member waiting to join) never answers a client:
    it has no quorum, as etcd."""
    ports = [free_port() for _ in range(3)]
    ic = ",".join("m%d=http://127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
    i = int(who[1]) - 1
    client = free_port()
    args = common(client, "127.0.0.1", ports[i], tmp_path / "data") + [
        "--name", who, "--initial-cluster", ic, "--initial-cluster-token", "t3"]
    p = Proc(LSKVD if TARGET != "etcd" else ETCD, args, tmp_path)
    try:
        time.sleep(4)
        assert p.proc.poll() is None, p.log()[-2000:]
        r = ctl("127.0.0.1:%d" % client, "put", "k", "v")
        assert r.returncode != 0
        r = ctl("127.0.0.1:%d" % client, "get", "k", "--consistency=s")
        assert r.returncode != 0
    finally:
        p.stop()
