"""Helpers shared by the interop scripts in this directory (stdlib only).

The scripts are run as `python tests/interop/<script>.py`, so this directory is on sys.path and
`import interop_common` works without packaging.
"""

import os
import random
import sys
import time


class CheckFailed(Exception):
    """A verification failed: the message says what was expected and what was seen."""


def log(msg):
    """Progress goes to stderr; stdout carries only the final OK lines."""
    print(msg, file=sys.stderr, flush=True)


def ok(msg):
    print("OK " + msg, flush=True)


def run_main(main):
    """Runs main(); exit 0 on success, 1 with one FAIL line on a failed check or client error."""
    try:
        main()
    except CheckFailed as e:
        print("FAIL: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("FAIL: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as e:  # a client exception is a failure too, named with its type
        print("FAIL: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)


class Deadline:
    """A point in time; every wait in the scripts is bounded by one."""

    def __init__(self, seconds, what):
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end

    def step(self, at_most):
        """How long the next single wait may take: at most `at_most`, never past the deadline."""
        return max(0.0, min(at_most, self.left()))

    def sleep(self, at_most):
        time.sleep(self.step(at_most))

    def fail(self, detail):
        raise CheckFailed("%s: not done within %ss: %s" % (self.what, self.seconds, detail))


def make_records(n, seed, max_value=2000):
    """n records (key, value, headers): keys b'k<i>', values random binary of 0..max_value bytes.

    Every 97th value is empty (b'') and the first is max_value bytes, so both ends of the size
    range occur. Headers: a text one naming the index and a binary one.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i == 0:
            size = max_value
        elif i % 97 == 0:
            size = 0
        else:
            size = rng.randint(0, max_value)
        value = rng.randbytes(size)
        headers = [("idx", str(i).encode()), ("bin", rng.randbytes(8) + b"\x00\xff")]
        out.append((b"k%d" % i, value, headers))
    return out


def describe_bytes(b, limit=24):
    if b is None:
        return "None"
    head = b[:limit]
    return "%d bytes %r%s" % (len(b), head, "..." if len(b) > limit else "")


def check_partition_log(label, records, delivered, consumed, high_watermarks, base_offsets):
    """Verifies what a consumer read against what the producer was told was stored.

    records:          list of (key, value, headers) in produce order (index i = produce order).
    delivered:        list of (partition, offset) per record index, from delivery reports.
    consumed:         list of (partition, offset, key, value, headers) in the order read per
                      partition (interleaving between partitions does not matter).
    high_watermarks:  {partition: high watermark} taken after producing, for every partition.
    base_offsets:     {partition: offset where this run's records start}: the log start offset
                      for a fresh topic; records read below it (older data) are ignored.
    Raises CheckFailed listing up to 5 problems; checks identity, no loss, no duplicate, and that
    each partition holds its records in produce order at the offsets the broker acknowledged.
    """
    problems = []
    by_key = {rec[0]: i for i, rec in enumerate(records)}  # keys are unique within a run
    seen = set()
    per_partition = {}  # partition -> record indexes in the order read
    for (p, off, key, value, headers) in consumed:
        if off < base_offsets.get(p, 0):
            continue
        i = by_key.get(key)
        if i is None:
            problems.append("partition %d offset %d: unexpected record with key %r" % (p, off, key))
            continue
        if i in seen:
            problems.append("partition %d offset %d: duplicate of record %r" % (p, off, key))
            continue
        seen.add(i)
        per_partition.setdefault(p, []).append(i)
        _, v, h = records[i]
        if (p, off) != tuple(delivered[i]):
            problems.append("record %r read at partition %d offset %d, acknowledged at partition "
                            "%d offset %d" % (key, p, off, delivered[i][0], delivered[i][1]))
        if value != v:
            problems.append("partition %d offset %d (key %r): value %s, expected %s"
                            % (p, off, key, describe_bytes(value), describe_bytes(v)))
        if list(headers or []) != list(h):
            problems.append("partition %d offset %d (key %r): headers %r, expected %r"
                            % (p, off, key, headers, h))
    missing = [i for i in range(len(records)) if i not in seen]
    if missing:
        problems.append("%d of %d records never read, e.g. %s"
                        % (len(missing), len(records),
                           ", ".join("%r@p%d/o%d" % (records[i][0], delivered[i][0], delivered[i][1])
                                     for i in missing[:5])))
    # Order: per partition the records must come back in produce order.
    for p, idx in sorted(per_partition.items()):
        if idx != sorted(idx):
            j = next(j for j in range(1, len(idx)) if idx[j] < idx[j - 1])
            problems.append("partition %d: produce order broken: %r read after %r"
                            % (p, records[idx[j]][0], records[idx[j - 1]][0]))
    # Nothing more and nothing less than acknowledged below the high watermark.
    per_part_count = {}
    for p, _ in delivered:
        per_part_count[p] = per_part_count.get(p, 0) + 1
    for p in sorted(set(high_watermarks) | set(per_part_count)):
        if p not in high_watermarks:
            problems.append("partition %d: acknowledged records but no high watermark" % p)
            continue
        hw, base, want = high_watermarks[p], base_offsets.get(p, 0), per_part_count.get(p, 0)
        if hw - base != want:
            problems.append("partition %d: %d records between offset %d and the high watermark "
                            "%d, but %d acknowledged" % (p, hw - base, base, hw, want))
    if problems:
        more = "" if len(problems) <= 5 else " (and %d more)" % (len(problems) - 5)
        raise CheckFailed("%s: %d problem(s)%s:\n  %s"
                          % (label, len(problems), more, "\n  ".join(problems[:5])))


def write_atomic(path, text):
    """Replaces the file at `path` with `text` in one step (a reader never sees half of it)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
