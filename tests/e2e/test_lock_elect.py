"""etcdctl lock and elect (clientv3's concurrency package over leases, txns
and watch) behave on lskvd as on etcd 3.4: the same output (lease ids in
key names masked), a second locker waits for the first, an observer sees
each new leader (issue 9)."""
import re
import subprocess
import time

from conftest import ETCDCTL, normalize


def ctl(s, *args):
    return [ETCDCTL, "--endpoints=" + s.endpoint] + list(args)


def mask(text):
    return re.sub(r"/[0-9a-f]{12,16}\b", "/<LEASE>", text)


def start(s, *args):
    return subprocess.Popen(ctl(s, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"ETCDCTL_API": "3"})


def finish(p, wait=10):
    try:
        out, err = p.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, err = p.communicate(timeout=10)
    return out


def lock_transcript(s):
    out = []
    r = subprocess.run(ctl(s, "lock", "job", "echo", "ran-under-lock"), capture_output=True,
                       text=True, env={"ETCDCTL_API": "3"}, timeout=30)
    out.append(("exec", r.returncode, mask(normalize(r.stdout, s))))
    holder = start(s, "lock", "job")          # holds the lock until terminated
    time.sleep(1.0)
    waiter = start(s, "lock", "job", "echo", "second")
    time.sleep(1.5)
    out.append(("waiting", waiter.poll()))    # still waiting for the holder
    held = s.etcdctl("get", "--prefix", "job/", "--keys-only")
    out.append(("keys", len([k for k in held.stdout.split() if k])))
    holder.terminate()
    out.append(("holder", mask(normalize(finish(holder), s))))
    out.append(("second", finish(waiter, 15)))
    return out


def test_etcdctl_lock_as_etcd(pair):
    etcd, lskvd = pair
    want = lock_transcript(etcd)
    assert want[1] == ("waiting", None) and want[2] == ("keys", 2), want
    assert lock_transcript(lskvd) == want


def elect_transcript(s):
    out = []
    observer = start(s, "elect", "-l", "pick")
    time.sleep(0.5)
    alice = start(s, "elect", "pick", "alice")
    time.sleep(1.0)
    bob = start(s, "elect", "pick", "bob")     # waits behind alice
    time.sleep(1.0)
    out.append(("bob waiting", bob.poll()))
    alice.terminate()                          # resigns: bob leads
    out.append(("alice", mask(normalize(finish(alice), s))))
    time.sleep(1.5)
    bob.terminate()
    out.append(("bob", mask(normalize(finish(bob), s))))
    time.sleep(0.5)
    observer.terminate()
    out.append(("observer", mask(normalize(finish(observer), s))))
    return out


def test_etcdctl_elect_as_etcd(pair):
    etcd, lskvd = pair
    want = elect_transcript(etcd)
    assert "alice" in want[3][1] and "bob" in want[3][1], want
    assert elect_transcript(lskvd) == want
