"""The plain files of a data dir are bound or refused (issue 7 point 5): in a
data dir that is not empty, lskvd never makes ids, data.key, ledger.secret or
identity files again; a missing one, or an ids file whose cluster or member id
was changed, is refused at start with a message naming the file, and the
refused start leaves every byte of the data dir as it was."""
import hashlib
import os
import re
import shutil

import pytest

from conftest import lskvd_only, rpc_pb2

pytestmark = lskvd_only


def tree(d):
    """{relative path: (mode, sha256)} of every file and directory under d."""
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


@pytest.fixture
def node(server_factory):
    """A stopped lskvd with one key written."""
    s = server_factory("lskvd")
    s.kv().Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=20)
    s.stop_cleanly()
    return s


def assert_refused(s, path, reason):
    """Starting s fails: non-zero exit, an ERROR line 'refusing to start:
    <path>: <reason>', and the data dir byte for byte as it was."""
    before = tree(s.data_dir)
    with pytest.raises(RuntimeError) as ei:
        s.start(timeout=30)
    assert "exited with" in str(ei.value), str(ei.value)
    assert s.proc.returncode != 0
    log = s.log_text(True)
    m = re.search(r"error .*refusing to start: (.*)", log)
    assert m, "no refusal in the log:\n" + log[-2000:]
    assert m.group(1).startswith("%s: %s" % (path, reason)), m.group(1)
    assert "ready to serve" not in log
    assert tree(s.data_dir) == before, "the refused start changed the data dir"


def read_ids(s):
    text = (s.data_dir / "ids").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def write_ids(s, ids):
    (s.data_dir / "ids").write_text("".join("%s=%s\n" % kv for kv in ids.items()))


MISSING = "missing in a non-empty data dir"


@pytest.mark.parametrize("name", [
    "ids", "data.key", "ledger.secret",
    "identity/service.pem", "identity/service.key", "identity/node.pem", "identity/node.key",
])
def test_deleted_file_is_refused(node, name):
    os.unlink(node.data_dir / name)
    assert_refused(node, node.data_dir / name, MISSING)


@pytest.mark.parametrize("name", ["identity", "raft", "ledger", "engine"])
def test_deleted_directory_is_refused(node, name):
    shutil.rmtree(node.data_dir / name)
    assert_refused(node, node.data_dir / name, "")


@pytest.mark.parametrize("field", ["cluster_id", "member_id"])
def test_changed_id_is_refused(node, field):
    ids = read_ids(node)
    v = int(ids[field], 16)
    ids[field] = "%016x" % (v ^ 1)
    write_ids(node, ids)
    assert_refused(node, node.data_dir / "ids", "does not match this data dir")


def test_ids_of_another_data_dir_are_refused(node, server_factory):
    other = server_factory("lskvd")
    other.stop_cleanly()
    shutil.copyfile(other.data_dir / "ids", node.data_dir / "ids")
    assert_refused(node, node.data_dir / "ids", "does not match this data dir")


def test_untagged_ids_are_refused(node):
    ids = read_ids(node)
    del ids["tag"]
    write_ids(node, ids)
    assert_refused(node, node.data_dir / "ids", "malformed")


def test_another_data_key_is_refused(node):
    """The tag binds ids to data.key: a replaced key is named through ids
    before any record fails to open."""
    p = node.data_dir / "data.key"
    key = bytearray(p.read_bytes())
    key[0] ^= 1
    p.write_bytes(bytes(key))
    assert_refused(node, node.data_dir / "ids", "does not match this data dir")


def test_untouched_data_dir_restarts_and_an_empty_one_bootstraps(node, server_factory):
    ids = read_ids(node)
    node.start()
    assert node.etcdctl("get", "k", "--print-value-only").stdout.strip() == "v"
    node.stop_cleanly()
    assert read_ids(node) == ids
    fresh = server_factory("lskvd", start=False)
    fresh.data_dir.mkdir(parents=True)  # exists and is empty: still new
    fresh.start()
    assert re.fullmatch(r"[0-9a-f]{16}", read_ids(fresh)["cluster_id"])
    assert re.fullmatch(r"[0-9a-f]{64}", read_ids(fresh)["tag"])
    fresh.stop_cleanly()
