#!/usr/bin/env python3
"""Write tests/data/journal-v2.bin and journal-v3.bin, the pinned journals
of format versions 2 and 3 (version 3 is version 2 without the keys).

The encoder below is written from doc/journal-format.md, not from
src/journal/journal.c, so that the fixture checks the code against the
document.  tests/unit/test_journal.c (test_fixture_v2, _v3) replays the
files, compares every field with the records listed here, and checks that
gridrun's own writer produces the same bytes.  Run it from anywhere:

    python3 tests/data/mkjournal.py 2 tests/data/journal-v2.bin
    python3 tests/data/mkjournal.py 3 tests/data/journal-v3.bin

It is deterministic: the same records give the same bytes every time.
"""
import math
import struct
import sys

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MAX = (1 << 63) - 1

RUN_START, WORKER, TASK_START, TASK_END, DRAIN, RUN_END, WORKER_LOST, QUARANTINE = range(1, 9)
DONE, RETRY, FAILED, POISON, REQUEUED = range(5)


def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(v):
    assert 0 <= v <= U64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v, bits):
    """v is a signed number (or any pattern of the given width)."""
    mask = (1 << bits) - 1
    v &= mask
    sign = mask if v >> (bits - 1) else 0
    return ((v << 1) & mask) ^ sign


def us_ok(v):
    return math.copysign(1.0, v) > 0 and v < 9e9  # NaN fails the second test


def to_us(v):
    t = v * 1e6
    us = int(t)
    return us + (1 if t - us >= 0.5 else 0)


def head(key, index, def_, attempt, prev):
    """Flags (index, def, attempt bits), key and fields of an entry's
    head, coded against prev = [index, def] of the entry before."""
    flags, rest = 0, b""
    delta = (index - prev[0] - 1) & U64
    if delta:
        flags |= 0x01
        rest += varint(zigzag(delta, 64))
    if def_ != prev[1]:
        flags |= 0x02
        rest += varint(def_)
    if attempt != 1:
        flags |= 0x04
        rest += varint(attempt)
    prev[:] = [index, def_]
    return flags, (struct.pack("<Q", key) if VERSION == 2 else b"") + rest


def start_entries(tasks):
    out, prev = bytearray(), [U64, 0]
    for key, index, def_, attempt in tasks:
        flags, rest = head(key, index, def_, attempt, prev)
        out += bytes([flags]) + rest
    return bytes(out)


def end_entries(tasks):
    out, prev, prev_rss = bytearray(), [U64, 0], 0
    for (key, index, def_, attempt, exit_code, signal, rflags, outcome,
         wall, utime, stime, rss) in tasks:
        flags, rest = head(key, index, def_, attempt, prev)
        if exit_code or signal or rflags or outcome:
            flags |= 0x08
            rest += varint(zigzag(exit_code, 32)) + varint(zigzag(signal, 32))
            rest += varint(rflags) + varint(outcome)
        times = (wall, utime, stime)
        if all(us_ok(t) for t in times):
            w, u, s = (to_us(t) for t in times)
            if w:
                flags |= 0x10
                rest += varint(w)
            if u or s:
                flags |= 0x20
                rest += varint(u) + varint(s)
        else:
            flags |= 0x80
            rest += struct.pack("<ddd", *times)
        if rss != prev_rss:
            flags |= 0x40
            rest += varint(zigzag(rss, 64))
        out += bytes([flags]) + rest
        prev_rss = rss
    return bytes(out)


def payload(rtype, time, body):
    return struct.pack("<Bd", rtype, time) + body


def frame(p):
    return struct.pack("<II", len(p), crc32c(p)) + p


def worker(time, rank, cpus, gpus, host):
    h = host.encode()
    return payload(WORKER, time, struct.pack("<IIIB", rank, cpus, gpus, len(h)) + h)


def quarantine(time, level, on, failures, until, name):
    n = name.encode()
    body = struct.pack("<IIIdB", level, on, failures, until, len(n)) + n
    return payload(QUARANTINE, time, body)


def batch(rtype, time, worker_rank, tasks):
    enc = start_entries if rtype == TASK_START else end_entries
    return payload(rtype, time, struct.pack("<II", worker_rank, len(tasks)) + enc(tasks))


VERSION = 2


# The records; test_fixture_v2 in tests/unit/test_journal.c lists the same.
def records():
    return [
        payload(RUN_START, 1700000000.25, struct.pack("<QII", 0x0123456789ABCDEF, 1, 2)),
        worker(1700000000.5, 1, 8, 1, "node001"),
        worker(1700000000.5, 2, 8, 0, "node002.example.org"),
        batch(TASK_START, 1700000001.0, 1, [
            (0xEFC46CDE4DC87BB3, 0, 0, 1),
            (0x1111222233334444, 1, 0, 1),
            (0x5555666677778888, 7, 2, 3),
            (0x9999AAAABBBBCCCC, 3, 2, 1),
        ]),
        batch(TASK_END, 1700000002.0, 1, [
            (0xEFC46CDE4DC87BB3, 0, 0, 1, 0, 0, 0, DONE, 1.5, 1.25, 0.125, 20480),
            (0x1111222233334444, 1, 0, 1, 3, 0, 1, RETRY, 0.75, 0.5, 0.0625, 20480),
        ]),
        batch(TASK_START, 1700000003.0, 2, []),
        payload(WORKER_LOST, 1700000004.0, struct.pack("<I", 2)),
        payload(DRAIN, 1700000005.0, struct.pack("<id", 15, 1700000065.0)),
        batch(TASK_END, 1700000006.0, 1, [
            (0x5555666677778888, 7, 2, 3, -1, 9, 2, REQUEUED, 30.5, 0.0, 0.0, -1),
            # 1.5 us: kept as 2 us.
            (0x9999AAAABBBBCCCC, 3, 2, 1, 0, 0, 0, DONE, 0.0000015, 0.0, 0.0, -1),
            (U64, U64, U32, U32, INT32_MIN, INT32_MAX, U32, FAILED,
             -1.0, math.inf, -0.0, INT64_MAX),
            (0, 0, 0, 1, 0, 0, 0, DONE, 0.0, 0.0, 0.0, 0),
        ]),
        quarantine(1700000006.5, 2, 1, 3, 1700000606.5, "rack r1"),
        quarantine(1700000006.75, 2, 0, 3, 0.0, ""),
        payload(RUN_END, 1700000007.0, struct.pack("<i", 75)),
    ]


def main():
    global VERSION
    if len(sys.argv) != 3 or sys.argv[1] not in ("2", "3"):
        sys.exit("usage: mkjournal.py 2|3 OUTPUT")
    VERSION = int(sys.argv[1])
    with open(sys.argv[2], "wb") as f:
        f.write(b"GRJNL\0\0" + bytes([VERSION]))
        for p in records():
            f.write(frame(p))


if __name__ == "__main__":
    main()
