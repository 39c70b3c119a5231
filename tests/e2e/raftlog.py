"""Read and rewrite libraft 0.15's raft_uv data directory, for tamper tests.

Written from libraft 0.15's on-disk format (src/uv_encoding.[ch],
uv_segment.c, uv_snapshot.c, uv_metadata.c, uv.c, byte.[ch]); no code of it
is copied. What a host attacker can do with the files, with every libraft
checksum recomputed so that libraft itself accepts the result:

    log = RaftLog(data_dir / "raft")
    log.entries()                 # [Entry(index, term, type, payload, file)]
    log.duplicate(7)              # copy entry 7 to the end of the log
    log.swap(7, 9)
    log.drop(8)                   # later entries move down one index
    log.splice(other_log, 5, 9, at=5)
    log.truncate(12)              # the log ends at 12
    log.snapshot_alias(older, newer)
    log.write()

Format (all integers little endian):

- metadata1 / metadata2: u64 format=1, u64 version, u64 term, u64 voted_for.
  The higher version wins; no checksum.
- Segments: closed "%016d-%016d" (first, last index), open "open-%d"
  (counter; preallocated, zero tail; its first index follows the previous
  segment). Content: u64 format=1, then batches. A batch: u32 crc(header),
  u32 crc(data), header = u64 n + n x (u64 term, u8 type, 3 unused, u32
  size), then the entries' data back to back. libraft only writes sizes that
  are multiples of 8 (its reader pads but its data CRC does not).
- Snapshots: "snapshot-<term>-<index>-<timestamp>" (the data, verbatim when
  compression is off) and the same name + ".meta": u64 format=1, u64 crc,
  u64 configuration index, u64 configuration length, configuration. The CRC
  covers conf index, conf length and the configuration. The snapshot's term
  and index come from the file name only.
- CRC: libraft's byteCrc32 (MSB first, polynomial 0x04C11DB7, init 0, no
  final xor).

Loading follows uv.c: the newest snapshot (by term, index, timestamp);
closed segments entirely behind it are ignored, as is any closed segment
before a gap; the log starts at the first closed segment kept, or right after
the snapshot when only open segments remain.
"""
import binascii
import os
import re
import struct
from pathlib import Path

FORMAT = 1
COMMAND, BARRIER, CHANGE = 1, 2, 3
TYPE_NAMES = {COMMAND: "command", BARRIER: "barrier", CHANGE: "change"}

CLOSED_RE = re.compile(r"^(\d+)-(\d+)$")
OPEN_RE = re.compile(r"^open-(\d+)$")
SNAP_META_RE = re.compile(r"^snapshot-(\d+)-(\d+)-(\d+)\.meta$")


class FormatError(Exception):
    """A file does not parse as libraft 0.15 would accept it."""


# --- CRC ------------------------------------------------------------------
_REV8 = bytes(int("{:08b}".format(i)[::-1], 2) for i in range(256))


def _rev32(v):
    return int("{:032b}".format(v)[::-1], 2)


def crc32(data, init=0):
    """libraft's byteCrc32. An MSB-first CRC equals the reflected CRC of the
    bit-reversed bytes, reversed back; zlib's CRC is reflected, with ~ on
    entry and exit, which the xors undo."""
    state = _rev32(init) ^ 0xFFFFFFFF
    raw = binascii.crc32(bytes(data).translate(_REV8), state) ^ 0xFFFFFFFF
    return _rev32(raw)


def crc32_reference(data, init=0):
    """Bit by bit, for checking crc32 (slow)."""
    crc = init
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


# --- entries and batches --------------------------------------------------
class Entry:
    """One log entry. index and file are filled in by RaftLog."""

    def __init__(self, term, type, payload, index=None, file=None):
        self.term, self.type, self.payload = term, type, bytes(payload)
        self.index, self.file = index, file

    def copy(self):
        return Entry(self.term, self.type, self.payload)

    def sealed_header(self):
        """lskv's plain header of a sealed COMMAND entry (docs/entry-format.md,
        versions 1 and 2) as a dict, or None."""
        p = self.payload
        if self.type != COMMAND or len(p) < 20:
            return None
        h = dict(version=p[0], kind=p[1], pad=p[3])
        if p[0] == 1:
            h.update(term=struct.unpack(">Q", p[4:12])[0], stamp=struct.unpack(">Q", p[12:20])[0])
        elif len(p) >= 64:
            key_id, term, index, stamp = struct.unpack(">IQQQ", p[4:32])
            h.update(key_id=key_id, term=term, index=index, stamp=stamp, chain=p[32:64])
        return h

    def __repr__(self):
        return "Entry(index=%s, term=%d, %s, %d bytes, %s)" % (
            self.index, self.term, TYPE_NAMES.get(self.type, self.type),
            len(self.payload), self.file)


def encode_batch(entries):
    for e in entries:
        if len(e.payload) % 8:
            raise FormatError("entry of %d bytes: libraft needs a multiple of 8"
                              % len(e.payload))
    header = struct.pack("<Q", len(entries)) + b"".join(
        struct.pack("<QB3xI", e.term, e.type, len(e.payload)) for e in entries)
    data = b"".join(e.payload for e in entries)
    return struct.pack("<II", crc32(header), crc32(data)) + header + data


def decode_batch(buf, off):
    """-> (entries, new offset). FormatError(corrupt=True) for what libraft
    calls RAFT_CORRUPT (so an open segment ends there), False for a short
    read (RAFT_IOERR)."""
    def need(n):
        if off + n > len(buf):
            err = FormatError("short read at byte %d" % off)
            err.corrupt = False
            raise err

    def corrupt(msg):
        err = FormatError(msg + " at byte %d" % off)
        err.corrupt = True
        return err

    need(16)
    crc_h, crc_d, n = struct.unpack_from("<IIQ", buf, off)
    if n == 0:
        raise corrupt("entries count in preamble is zero")
    if n > (8 << 20) // 32:
        raise corrupt("entries count %d too high" % n)
    hlen = 8 + 16 * n
    need(8 + hlen)
    header = buf[off + 8:off + 8 + hlen]
    if crc32(header) != crc_h:
        raise corrupt("header checksum mismatch")
    entries, sizes = [], []
    for i in range(n):
        term, typ, size = struct.unpack_from("<QB3xI", header, 8 + 16 * i)
        if typ not in TYPE_NAMES:
            raise corrupt("entry type %d" % typ)
        entries.append([term, typ])
        sizes.append(size)
    dlen = sum(sizes)
    start = off + 8 + hlen
    need(8 + hlen + dlen)
    data = buf[start:start + dlen]
    if crc32(data) != crc_d:
        raise corrupt("data checksum mismatch")
    out, p = [], 0
    for (term, typ), size in zip(entries, sizes):
        out.append(Entry(term, typ, data[p:p + size]))
        p += size
    return out, start + dlen


class Segment:
    """A segment file: its batches (lists of Entry) and the bytes after them
    (an open segment's zero tail)."""

    def __init__(self, name, batches, tail=b"", fmt=FORMAT):
        self.name = self.orig_name = name
        m = OPEN_RE.match(name)
        self.is_open = m is not None
        self.counter = int(m.group(1)) if m else None
        m = CLOSED_RE.match(name)
        self.first, self.last = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        self.batches, self.tail, self.fmt = batches, tail, fmt
        self.dirty = False

    def entries(self):
        return [e for b in self.batches for e in b]

    def encode(self):
        if self.fmt == 0 and not self.batches:
            return self.tail  # preallocated, never written
        body = struct.pack("<Q", self.fmt) + b"".join(encode_batch(b) for b in self.batches)
        return body + self.tail

    @classmethod
    def load(cls, path):
        buf = Path(path).read_bytes()
        name = os.path.basename(path)
        is_open = OPEN_RE.match(name) is not None
        if len(buf) == 0:
            if is_open:
                return cls(name, [], b"", fmt=0)
            raise FormatError("%s: file is empty" % name)
        if len(buf) < 8:
            raise FormatError("%s: file has only %d bytes" % (name, len(buf)))
        (fmt,) = struct.unpack_from("<Q", buf, 0)
        if fmt != FORMAT:
            if is_open and fmt == 0 and not any(buf):
                return cls(name, [], buf, fmt=0)
            raise FormatError("%s: unexpected format version %d" % (name, fmt))
        off, batches = 8, []
        while off < len(buf):
            try:
                entries, off2 = decode_batch(buf, off)
            except FormatError as e:
                if is_open and getattr(e, "corrupt", False):
                    break  # libraft truncates an open segment here
                raise FormatError("%s: %s" % (name, e))
            batches.append(entries)
            off = off2
        seg = cls(name, batches, buf[off:])
        if not is_open and seg.tail:
            raise FormatError("%s: %d bytes after the last batch" % (name, len(seg.tail)))
        if not is_open and len(seg.entries()) != seg.last - seg.first + 1:
            raise FormatError("%s: found %d entries" % (name, len(seg.entries())))
        return seg


class Snapshot:
    def __init__(self, raft_dir, meta_name):
        m = SNAP_META_RE.match(meta_name)
        self.term, self.index, self.timestamp = (int(g) for g in m.groups())
        self.meta_name = meta_name
        self.name = meta_name[:-len(".meta")]
        self.meta = (Path(raft_dir) / meta_name).read_bytes()
        self.data = (Path(raft_dir) / self.name).read_bytes()
        if len(self.meta) < 32:
            raise FormatError("%s: %d bytes" % (meta_name, len(self.meta)))
        fmt, crc, conf_index, conf_len = struct.unpack_from("<QQQQ", self.meta, 0)
        self.conf_index = conf_index
        self.conf = self.meta[32:32 + conf_len]
        self.format, self.crc = fmt, crc

    def crc_ok(self):
        return self.crc == self.meta_crc(self.conf_index, self.conf)

    @staticmethod
    def meta_crc(conf_index, conf):
        return crc32(conf, crc32(struct.pack("<QQ", conf_index, len(conf))))

    @staticmethod
    def encode_meta(conf_index, conf):
        crc = Snapshot.meta_crc(conf_index, conf)
        return struct.pack("<QQQQ", FORMAT, crc, conf_index, len(conf)) + conf

    def key(self):
        return (self.term, self.index, self.timestamp)

    def __repr__(self):
        return "Snapshot(%s, conf_index=%d, %d bytes)" % (self.name, self.conf_index,
                                                          len(self.data))


class RaftLog:
    """The raft/ directory of a stopped lskvd, as libraft 0.15 would load it."""

    def __init__(self, raft_dir):
        self.dir = Path(raft_dir)
        self.metadata = {}
        for n in (1, 2):
            p = self.dir / ("metadata%d" % n)
            if p.exists():
                b = p.read_bytes()
                if len(b) != 32:
                    raise FormatError("%s has %d bytes" % (p.name, len(b)))
                self.metadata[n] = list(struct.unpack("<QQQQ", b))
        self.snapshots = []
        self.segments = []
        names = sorted(os.listdir(self.dir))
        for name in names:
            if SNAP_META_RE.match(name):
                data = self.dir / name[:-len(".meta")]
                if data.exists() and data.stat().st_size > 0:
                    self.snapshots.append(Snapshot(self.dir, name))
            elif CLOSED_RE.match(name) or OPEN_RE.match(name):
                self.segments.append(Segment.load(self.dir / name))
        self.snapshots.sort(key=Snapshot.key)
        closed = sorted((s for s in self.segments if not s.is_open), key=lambda s: s.first)
        opened = sorted((s for s in self.segments if s.is_open), key=lambda s: s.counter)
        self.segments = closed + opened
        self.ignored = []  # closed segments libraft would not load
        self.removed = []  # file names to delete on write
        self.start_index = self._filter()
        self._renumber(rename=False)

    # -- loading as uv.c does
    def _filter(self):
        snap = self.snapshots[-1] if self.snapshots else None
        closed = [s for s in self.segments if not s.is_open]
        if snap is None:
            return closed[0].first if closed else 1
        if not closed:
            return snap.index + 1
        has_open = len(closed) < len(self.segments)
        if closed[-1].last < snap.index and not has_open:
            self.ignored, self.segments = closed, []
            return snap.index + 1
        i = len(closed) - 1
        while i > 0 and closed[i - 1].last == closed[i].first - 1:
            i -= 1
        if closed[i].first > snap.index + 1:
            raise FormatError("closed segment %s is past last snapshot" % closed[i].name)
        self.ignored = closed[:i]
        self.segments = self.segments[i:]
        return closed[i].first

    def _renumber(self, rename=True):
        nxt = self.start_index
        for seg in self.segments:
            n = len(seg.entries())
            for e in seg.entries():
                e.index, e.file = nxt, seg.name
                nxt += 1
            if not seg.is_open and rename:
                name = "%016d-%016d" % (nxt - n, nxt - 1)
                if name != seg.name:
                    seg.name, seg.first, seg.last, seg.dirty = name, nxt - n, nxt - 1, True
                    for e in seg.entries():
                        e.file = name

    # -- reading
    def entries(self):
        return [e for s in self.segments for e in s.entries()]

    def entry(self, index):
        for e in self.entries():
            if e.index == index:
                return e
        raise KeyError("no raft entry %d (log has %s)" % (index, self.bounds()))

    def bounds(self):
        es = self.entries()
        return (es[0].index, es[-1].index) if es else (None, None)

    def last_index(self):
        return self.bounds()[1]

    def commands(self):
        return [e for e in self.entries() if e.type == COMMAND]

    def term(self):
        """The current term in the metadata files (the higher version)."""
        if not self.metadata:
            return 0
        return max(self.metadata.values(), key=lambda m: m[1])[2]

    def _locate(self, index):
        for seg in self.segments:
            for b in seg.batches:
                for k, e in enumerate(b):
                    if e.index == index:
                        return seg, b, k
        raise KeyError("no raft entry %d (log has %s)" % (index, self.bounds()))

    # -- tampering
    def set_entry(self, index, term, type, payload):
        seg, b, k = self._locate(index)
        b[k] = Entry(term, type, payload)
        seg.dirty = True
        self._renumber()

    def append(self, entries):
        """Appends entries (copied) as one new batch at the end of the log."""
        if not self.segments:
            raise FormatError("no segment to append to")
        seg = self.segments[-1]
        batch = [e.copy() for e in entries]
        size = len(encode_batch(batch))
        seg.batches.append(batch)
        if seg.is_open:
            seg.tail = seg.tail[size:] if len(seg.tail) >= size else b""
            if seg.fmt == 0:
                seg.fmt, seg.tail = FORMAT, seg.tail[8:]
        seg.dirty = True
        self._renumber()

    def duplicate(self, index, term=None):
        """Copies entry index to the end of the log (raft term kept unless given)."""
        e = self.entry(index).copy()
        if term is not None:
            e.term = term
        self.append([e])

    def swap(self, i, j):
        si, bi, ki = self._locate(i)
        sj, bj, kj = self._locate(j)
        bi[ki], bj[kj] = bj[kj], bi[ki]
        si.dirty = sj.dirty = True
        self._renumber()

    def _remove(self, index):
        """Takes entry index out of its batch; an open segment keeps its size."""
        seg, b, k = self._locate(index)
        before = len(encode_batch(b))
        del b[k]
        if not b:
            seg.batches.remove(b)
        if seg.is_open:
            seg.tail = bytes(before - (len(encode_batch(b)) if b else 0)) + seg.tail
        seg.dirty = True
        if not seg.batches and not seg.is_open:
            self.segments.remove(seg)
            self.removed.append(seg.orig_name)

    def drop(self, index):
        """Removes entry index; later entries take the index before theirs."""
        self._remove(index)
        self._renumber()

    def truncate(self, last):
        """Drops every entry after index last (an open segment keeps its size)."""
        for e in reversed(self.entries()):
            if e.index <= last:
                break
            self._remove(e.index)
        self._renumber()

    def splice(self, other, first, last, at):
        """Puts copies of other's entries first..last at indexes at.. (replacing
        what is there, appending past the end)."""
        src = [other.entry(i) for i in range(first, last + 1)]
        end = self.last_index()
        for k, e in enumerate(src):
            idx = at + k
            if idx <= end:
                self.set_entry(idx, e.term, e.type, e.payload)
            else:
                self.append([e])

    def snapshot_alias(self, older, newer):
        """Gives the snapshot named newer (a Snapshot or its index) the data and
        metadata of older: libraft then loads older's state as newer's."""
        o = self._snap(older)
        n = self._snap(newer)
        n.data, n.meta = o.data, o.meta
        n.conf_index, n.conf, n.crc = o.conf_index, o.conf, o.crc
        n.dirty = True

    def _snap(self, s):
        if isinstance(s, Snapshot):
            return s
        for x in self.snapshots:
            if x.index == s:
                return x
        raise KeyError("no snapshot at index %s" % s)

    def set_term(self, term, voted_for=None):
        """Stores a new current term (as libraft does: next version, other file)."""
        version = max((m[1] for m in self.metadata.values()), default=0) + 1
        cur = max(self.metadata.values(), key=lambda m: m[1]) if self.metadata else [1, 0, 0, 0]
        n = 1 if version % 2 == 1 else 2
        self.metadata[n] = [FORMAT, version, term, cur[3] if voted_for is None else voted_for]
        self._meta_dirty = n

    # -- writing
    def write(self, everything=False):
        """Writes changed files back (all of them with everything=True)."""
        for name in self.removed:
            p = self.dir / name
            if p.exists():
                p.unlink()
        self.removed = []
        for seg in self.segments:
            if not (seg.dirty or everything):
                continue
            if seg.orig_name != seg.name and (self.dir / seg.orig_name).exists():
                (self.dir / seg.orig_name).unlink()
            _write(self.dir / seg.name, seg.encode())
            seg.orig_name, seg.dirty = seg.name, False
        for snap in self.snapshots:
            if getattr(snap, "dirty", False) or everything:
                _write(self.dir / snap.name, snap.data)
                _write(self.dir / snap.meta_name, snap.meta)
                snap.dirty = False
        n = getattr(self, "_meta_dirty", None)
        for k, m in self.metadata.items():
            if everything or k == n:
                _write(self.dir / ("metadata%d" % k), struct.pack("<QQQQ", *m))
        self._meta_dirty = None
        _fsync_dir(self.dir)


def _write(path, data):
    tmp = Path(str(path) + ".tamper-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _fsync_dir(d):
    fd = os.open(str(d), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_files(raft_dir):
    """Every snapshot data file name, oldest first."""
    return [s.name for s in RaftLog(raft_dir).snapshots]


def main(argv=None):
    """python3 raftlog.py RAFT_DIR: lists snapshots and entries."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    log = RaftLog(args[0])
    print("term %d, start index %d, ignored %s" % (log.term(), log.start_index,
                                                  [s.name for s in log.ignored]))
    for s in log.snapshots:
        print(s, "crc ok" if s.crc_ok() else "CRC MISMATCH")
    for e in log.entries():
        h = e.sealed_header()
        print("%6d term %d %-7s %6d bytes %s%s" % (
            e.index, e.term, TYPE_NAMES[e.type], len(e.payload), e.file,
            "" if h is None else " (sealed kind %d, stamp %d)" % (h["kind"], h["stamp"])))


if __name__ == "__main__":
    main()
