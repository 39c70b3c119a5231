"""Read and cut lskv ledger chunks (docs/ledger-format.md), for tamper tests.

Only what a host without the ledger secret can do: list frames, cut the
ledger after a leaf, drop or swap frames (frame CRCs recomputed). The Merkle
tree and the signatures are not touched, so lskvctl's audit (and lskvd) can
tell.
"""
import os
import re
import struct
from pathlib import Path

TYPES = {1: "kv", 2: "compact", 3: "lease", 4: "member", 5: "signature", 6: "other"}
NAME_RE = re.compile(r"^ledger_(\d+)(?:-(\d+)\.committed)?$")


def crc32c(b):
    crc = 0xFFFFFFFF
    for c in b:
        crc ^= c
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


class Frame:
    def __init__(self, chunk, offset, raw, leaf):
        self.chunk, self.offset, self.raw, self.leaf = chunk, offset, raw, leaf
        body = raw[4:-4]
        self.type = body[1]
        self.term, self.index, self.revision = struct.unpack(">QQq", body[4:28])

    def __repr__(self):
        return "Frame(leaf %d, %d.%d, %s, rev %d, %s@%d)" % (
            self.leaf, self.term, self.index, TYPES.get(self.type, self.type),
            self.revision, self.chunk, self.offset)


def chunks(ledger_dir):
    names = [n for n in os.listdir(ledger_dir) if NAME_RE.match(n)]
    return sorted(names, key=lambda n: int(NAME_RE.match(n).group(1)))


def header_len(data):
    (first,) = struct.unpack(">Q", data[12:20])
    return 24 + 32 * bin(first).count("1") + 4


def frames(ledger_dir):
    """Every complete frame of every chunk, in ledger order."""
    out = []
    for name in chunks(ledger_dir):
        data = (Path(ledger_dir) / name).read_bytes()
        leaf = int(NAME_RE.match(name).group(1))
        off = header_len(data)
        while off + 4 <= len(data):
            (n,) = struct.unpack(">I", data[off:off + 4])
            if off + 4 + n > len(data):
                break
            out.append(Frame(name, off, data[off:off + 4 + n], leaf))
            off += 4 + n
            leaf += 1
    return out


def cut(ledger_dir, keep):
    """Keeps the first `keep` leaves: later frames and chunks go; the chunk
    holding the cut becomes the open chunk ledger_<first>."""
    d = Path(ledger_dir)
    fs = frames(ledger_dir)
    if keep >= len(fs):
        return
    at = fs[keep]
    for name in chunks(ledger_dir):
        if int(NAME_RE.match(name).group(1)) > int(NAME_RE.match(at.chunk).group(1)):
            (d / name).unlink()
    data = (d / at.chunk).read_bytes()[:at.offset]
    first = NAME_RE.match(at.chunk).group(1)
    (d / at.chunk).unlink()
    (d / ("ledger_" + first)).write_bytes(data)


def _rewrite(ledger_dir, chunk, edits):
    """edits: [(offset, old_len, new_bytes)] in one chunk."""
    p = Path(ledger_dir) / chunk
    data = bytearray(p.read_bytes())
    for off, n, new in sorted(edits, reverse=True):
        data[off:off + n] = new
    p.write_bytes(bytes(data))


def swap(ledger_dir, i, j):
    """Swaps leaves i and j (same chunk) byte for byte; CRCs stay valid."""
    fs = frames(ledger_dir)
    a, b = fs[i], fs[j]
    assert a.chunk == b.chunk, "swap within one chunk only"
    _rewrite(ledger_dir, a.chunk, [(a.offset, len(a.raw), b.raw), (b.offset, len(b.raw), a.raw)])


def drop(ledger_dir, i):
    """Removes leaf i from its chunk (names of sealed chunks are kept)."""
    f = frames(ledger_dir)[i]
    _rewrite(ledger_dir, f.chunk, [(f.offset, len(f.raw), b"")])


def snapshot(ledger_dir):
    """{name: bytes} of the ledger directory, to compare before and after."""
    d = Path(ledger_dir)
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d))}


def flip(ledger_dir, i, pos):
    """Flips one bit of leaf i's body at byte pos (from the body's start) and
    recomputes the frame's CRC, as a host rewriting it would."""
    f = frames(ledger_dir)[i]
    body = bytearray(f.raw[4:-4])
    body[pos % len(body)] ^= 0x01
    new = f.raw[:4] + bytes(body) + struct.pack(">I", crc32c(bytes(body)))
    _rewrite(ledger_dir, f.chunk, [(f.offset, len(f.raw), new)])


def flip_header(ledger_dir, chunk, pos):
    """Flips one bit of a chunk header byte (pos within the CRC-covered part)
    and recomputes the header CRC."""
    p = Path(ledger_dir) / chunk
    data = bytearray(p.read_bytes())
    n = header_len(data) - 4
    data[pos % n] ^= 0x01
    data[n:n + 4] = struct.pack(">I", crc32c(bytes(data[:n])))
    p.write_bytes(bytes(data))
