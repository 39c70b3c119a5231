#!/usr/bin/env python3
"""Gives one line of reason for each failing test of an etcd-e2e.sh run.

Reads build/etcd-e2e/report.txt and the per-test logs; prints
"<target> <test> <RESULT>: <reason>" where the reason is the first of: lskvd
refusing a flag at start-up, a gRPC Unimplemented answer, an HTTP 404 for a v2
or other URL, a crash line, or else the test's own first failure line.
"""
import os
import re
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "build/etcd-e2e"

PATTERNS = [
    ("crash", re.compile(r"(AddressSanitizer|Segmentation fault|Aborted|assertion|SIGSEGV|core dumped|leftover member)")),
    ("flag", re.compile(r"etcd-\d+: (lskvd: --[^\r\n]*)")),
    ("unimplemented", re.compile(r"(code = Unimplemented desc = [^\"\\\r\n]*)")),
    ("test", re.compile(r"(\w+_test\.go:\d+: [^\r\n]{0,220})")),
    ("timeout", re.compile(r"(panic: test timed out[^\r\n]*)")),
]


def reason(log):
    try:
        text = open(log, encoding="utf-8", errors="replace").read()
    except OSError:
        return "no log"
    for kind, pat in PATTERNS:
        m = pat.search(text)
        if m:
            return f"[{kind}] {m.group(1)}"
    return "[?] no failure line found"


for line in open(os.path.join(OUT, "report.txt")):
    f = line.split()
    if len(f) != 4 or f[2] == "PASS" or f[2] == "SKIP":
        continue
    tgt, test, res = f[0], f[1], f[2]
    print(f"{tgt} {test} {res}: {reason(os.path.join(OUT, 'logs', tgt, test + '.log'))}")
