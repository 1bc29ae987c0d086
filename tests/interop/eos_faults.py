#!/usr/bin/env python3
"""Exactly-once consume-transform-produce (KIP-98/KIP-447) with confluent-kafka (librdkafka)
while the test (crates/dmq/tests/transactions_faults.rs) SIGKILLs and restarts brokers and the
metadata leader.

1. Produces --count records to --input with a plain idempotent acks=all producer: value
   b"in-<i>", key b"<i>", partition i % --partitions (so each input partition holds ascending
   ids).
2. The loop, the standard EOS pattern (confluent-kafka's examples/eos-transactions.py): a
   read_committed group consumer (enable.auto.commit=false) on --input and a transactional
   producer. Per batch: begin_transaction; one output record per input record (value
   b"out-<i>", same key, output partition = input partition); send_offsets_to_transaction(
   consumer.position(assignment), consumer.consumer_group_metadata()); commit_transaction.
     - a retriable error (timeouts while a broker is down) retries the same call;
     - an abortable error aborts the transaction and rewinds the consumer to the group's
       committed offsets;
     - a fatal error (fenced), or a transaction that can be neither committed nor aborted,
       recreates the producer and the consumer, which resumes from the committed offsets;
     - a batch consumed across a rebalance is dropped and the consumer rewound.
   It ends when the group's committed offsets add up to --count.
3. Reads the whole output read_committed (up to the high watermark, so every transaction must
   be finished) and checks that it holds every input id exactly once, each output partition in
   ascending id order; also counts what read_uncommitted sees (aborted attempts included).

Files beside --out, for the test that drives the faults:
  <out>.progress  the number of inputs whose outputs are committed (the sum of the group's
                  committed offsets), rewritten atomically after every commit;
  <out>.budget    written by the test: the loop commits at most this many inputs until it grows
                  (absent: no limit). It keeps the loop from finishing before the faults are done.
  <out>           the JSON report, written at the end:
                  {"inputs", "read_committed", "unique", "lost", "duplicated", "out_of_order",
                   "uncommitted_total", "commits", "aborts", "fatal", "retries", "rewinds",
                   "restarts", "rebalances", "dropped_batches", "recreated_consumers",
                   "errors": {name: count}, "loop_seconds", "high_watermarks", "lost_sample",
                   "duplicated_sample"}
  stderr          progress, every client error, slow calls and a watchdog's stall reports.

RDKAFKA_DEBUG=<contexts> in the environment turns on librdkafka's debug log of the producer.

Exit 0 with one `OK eos-faults ...` line on stdout; exit 1 with a FAIL line otherwise.

    python tests/interop/eos_faults.py --bootstrap H:P,... --input in --output out --group g \\
        --transactional-id t --count 3000 --out report.json
"""

import argparse
import collections
import json
import os
import threading
import time
import uuid

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

from interop_common import CheckFailed, Deadline, log, ok, run_main, write_atomic

# How long one transactional call may block before it is called again (librdkafka raises a
# retriable _TIMED_OUT then); the outage of one broker or of the metadata leader is shorter.
CALL_TIMEOUT_S = 10
# How long one call is retried in all before the transaction is given up (aborted).
CALL_RETRY_S = 45
# A call or loop phase that takes longer than this is logged.
SLOW_S = 2


def error_of(e):
    """The KafkaError inside a KafkaException (or a made-up one for anything else)."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return KafkaError(KafkaError._FAIL, str(e))


def produce_inputs(args):
    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)

    for i in range(args.count):
        while True:
            try:
                p.produce(args.input, key=b"%d" % i, value=b"in-%d" % i,
                          partition=i % args.partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    deadline = Deadline(args.timeout, "delivering the inputs")
    while p.flush(deadline.step(1.0)) > 0:
        if deadline.expired():
            deadline.fail("%d inputs undelivered" % len(p))
    if failed:
        raise CheckFailed("%d inputs failed to deliver, e.g. %s" % (len(failed), failed[0]))
    log("produced %d inputs to %s" % (args.count, args.input))


class Loop:
    """The consume-transform-produce loop and what it went through."""

    def __init__(self, args):
        self.args = args
        self.progress_path = args.out + ".progress"
        self.budget_path = args.out + ".budget"
        # Input partition -> the group's committed offset, as of the last commit we know of.
        self.committed = {}
        self.commits = 0
        self.aborts = 0
        self.fatal = 0
        self.retries = 0
        self.rewinds = 0
        self.restarts = 0
        self.dropped_batches = 0
        self.recreated_consumers = 0
        # Set by the rebalance callbacks (which run inside consume()).
        self.rebalanced = False
        self.rebalances = 0
        # What the loop is doing and since when, for the watchdog's stall reports.
        self.phase = "starting"
        self.phase_since = time.monotonic()
        self.last_commit = time.monotonic()
        self.empty_consumes = 0
        self.errors = collections.Counter()
        self.producer = None
        self.consumer = None

    # -- bookkeeping -----------------------------------------------------------------------

    def done_inputs(self):
        return sum(self.committed.values())

    def note(self, err, what):
        self.errors[err.name()] += 1
        log("%s: %s (retriable=%s abortable=%s fatal=%s)"
            % (what, err, err.retriable(), err.txn_requires_abort(), err.fatal()))

    def write_progress(self):
        write_atomic(self.progress_path, str(self.done_inputs()))

    def budget(self):
        try:
            with open(self.budget_path) as f:
                return int(f.read().strip() or "0")
        except (OSError, ValueError):
            return None

    # -- clients ---------------------------------------------------------------------------

    def new_consumer(self):
        if self.consumer is not None:
            self.recreated_consumers += 1
            try:
                self.consumer.close()
            except KafkaException as e:
                log("closing the consumer: %s" % e)
        self.consumer = Consumer({
            "bootstrap.servers": self.args.bootstrap,
            "group.id": self.args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 100,
        })
        self.consumer.subscribe([self.args.input], on_assign=self.on_rebalance,
                                on_revoke=self.on_rebalance)

    def on_rebalance(self, consumer, partitions):
        self.rebalanced = True
        self.rebalances += 1
        log("rebalance: %s" % sorted((tp.topic, tp.partition) for tp in partitions))

    def enter(self, phase):
        self.phase = phase
        self.phase_since = time.monotonic()

    def watchdog(self, stop):
        """Logs, from its own thread, a phase that lasts longer than SLOW_S (then every 5 s while
        it lasts), so a stall in CI shows where the loop stood."""
        reported = None
        while not stop.wait(0.5):
            now = time.monotonic()
            phase, since = self.phase, self.phase_since
            # Once when a phase gets slow, then every 5 s while it lasts.
            due = since + SLOW_S if reported is None or reported[0] != since else reported[1] + 5
            if phase != "idle" and now - since > SLOW_S and now >= due:
                reported = (since, now)
                log("watchdog: in %s for %.1fs (%d committed, last commit %.1fs ago, "
                    "%d empty consumes since)" % (phase, now - since, self.done_inputs(),
                                                  now - self.last_commit, self.empty_consumes))

    def new_producer(self):
        if self.producer is not None:
            # A fenced producer has nothing left to deliver that could count.
            self.producer.flush(1)
        self.producer = Producer({
            "bootstrap.servers": self.args.bootstrap,
            "transactional.id": self.args.transactional_id,
            "transaction.timeout.ms": 20000,
            "linger.ms": 2,
            # Works around a librdkafka bug (confluentinc/librdkafka#5511, with #5456; open in
            # 2.16): when the group coordinator's broker dies and leaves the Metadata answers,
            # librdkafka decommissions it but keeps it as the cached coordinator, and
            # send_offsets_to_transaction waits (past its timeout) for a broker state change
            # that never comes. Idle connections closing are such state changes: the request
            # then looks the coordinator up again within a few seconds.
            "connections.max.idle.ms": 3000,
            **({"debug": os.environ["RDKAFKA_DEBUG"]} if os.environ.get("RDKAFKA_DEBUG") else {}),
        })
        self.call("init_transactions", lambda: self.producer.init_transactions(CALL_TIMEOUT_S))

    def call(self, what, fn):
        """Calls a transactional API, again while it fails with a retriable error (up to
        CALL_RETRY_S); any other error is raised. Slow calls are logged."""
        deadline = Deadline(CALL_RETRY_S, what)
        while True:
            started = time.monotonic()
            try:
                result = fn()
                if time.monotonic() - started > SLOW_S:
                    log("%s took %.1fs" % (what, time.monotonic() - started))
                return result
            except KafkaException as e:
                err = error_of(e)
                log("%s failed after %.1fs" % (what, time.monotonic() - started))
                if not err.retriable() or err.fatal() or err.txn_requires_abort() or deadline.expired():
                    raise
                self.retries += 1
                self.note(err, "%s (retried)" % what)
                deadline.sleep(0.1)

    def refresh_committed(self):
        """The group's committed offsets, asked from the coordinator (after a restart of the
        clients, or when the commit outcome is unknown)."""
        deadline = Deadline(CALL_RETRY_S, "the group's committed offsets")
        tps = [TopicPartition(self.args.input, p) for p in range(self.args.partitions)]
        while True:
            try:
                got = self.consumer.committed(tps, timeout=CALL_TIMEOUT_S)
                self.committed = {tp.partition: max(tp.offset, 0) for tp in got}
                return
            except KafkaException as e:
                self.note(error_of(e), "committed offsets")
                if deadline.expired():
                    raise
                deadline.sleep(0.2)

    def restart_clients(self):
        """After a fatal error, or a transaction that could be neither committed nor aborted: a
        new producer (fencing any zombie of ours and aborting its open transaction) and a new
        consumer, which starts at the committed offsets."""
        self.restarts += 1
        self.enter("restart_clients")
        self.new_producer()
        self.new_consumer()
        self.refresh_committed()
        self.write_progress()

    def rewind(self):
        """After an abort: back to the group's committed offsets on the assigned partitions; a new
        consumer if the assignment cannot be read or sought (a rebalance in progress)."""
        self.rewinds += 1
        self.enter("rewind")
        try:
            assignment = self.consumer.assignment()
            if assignment:
                committed = self.consumer.committed(assignment, timeout=CALL_TIMEOUT_S)
                for tp in committed:
                    offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            return
        except KafkaException as e:
            self.note(error_of(e), "rewind (new consumer instead)")
        self.new_consumer()

    # -- one transaction -------------------------------------------------------------------

    def transaction(self, msgs):
        """One transaction over `msgs`; returns the offsets it committed ({partition: offset})."""
        p = self.producer
        self.enter("begin_transaction")
        self.call("begin_transaction", p.begin_transaction)
        self.enter("produce")
        for m in msgs:
            i = int(m.value()[len(b"in-"):])
            while True:
                try:
                    p.produce(self.args.output, key=m.key(), value=b"out-%d" % i,
                              partition=m.partition())
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        positions = [tp for tp in self.consumer.position(self.consumer.assignment())
                     if tp.offset >= 0]
        self.enter("send_offsets_to_transaction")
        self.call("send_offsets_to_transaction", lambda: p.send_offsets_to_transaction(
            positions, self.consumer.consumer_group_metadata(), CALL_TIMEOUT_S))
        self.enter("commit_transaction")
        self.call("commit_transaction", lambda: p.commit_transaction(CALL_TIMEOUT_S))
        return {tp.partition: tp.offset for tp in positions}

    def abort(self):
        """Aborts the open transaction and rewinds; if it cannot be aborted (fatal, or a commit
        that timed out is still going on in the background), restarts the clients instead."""
        self.enter("abort_transaction")
        try:
            self.call("abort_transaction", lambda: self.producer.abort_transaction(CALL_TIMEOUT_S))
        except KafkaException as e:
            err = error_of(e)
            self.note(err, "abort_transaction")
            if err.fatal():
                self.fatal += 1
            self.restart_clients()
            return
        self.aborts += 1
        self.rewind()

    def step(self):
        """Consumes one batch (within the budget) and runs its transaction."""
        budget = self.budget()
        room = self.args.batch if budget is None else min(self.args.batch, budget - self.done_inputs())
        if room <= 0:
            self.enter("idle")
            time.sleep(0.02)
            return
        msgs = []
        self.rebalanced = False
        if self.phase != "consume":
            self.enter("consume")
        batch = self.consumer.consume(num_messages=room, timeout=0.5)
        if self.rebalanced:
            # Records fetched before the rebalance may sit beside the new assignment's, whose
            # positions start at the committed offsets: drop the batch and start from those.
            if batch:
                self.dropped_batches += 1
                self.rewind()
            return
        for m in batch:
            if m.error() is None:
                msgs.append(m)
            elif m.error().fatal():
                raise KafkaException(m.error())
            else:
                self.note(m.error(), "consume")
        if not msgs:
            self.empty_consumes += 1
            return
        self.empty_consumes = 0
        try:
            offsets = self.transaction(msgs)
        except KafkaException as e:
            err = error_of(e)
            self.note(err, "transaction of %d records" % len(msgs))
            if err.fatal():
                self.fatal += 1
                self.restart_clients()
            else:
                # Abortable, or retriable past CALL_RETRY_S: give the attempt up either way. If
                # a timed-out commit did go through, the rewind finds the new offsets.
                self.abort()
            return
        self.commits += 1
        self.last_commit = time.monotonic()
        self.committed.update(offsets)
        self.write_progress()

    def run(self):
        started = time.monotonic()
        deadline = Deadline(self.args.max_seconds, "the loop")
        stop = threading.Event()
        watchdog = threading.Thread(target=self.watchdog, args=(stop,), daemon=True)
        watchdog.start()
        try:
            self.new_consumer()
            self.new_producer()
            self.write_progress()
            while self.done_inputs() < self.args.count:
                if deadline.expired():
                    deadline.fail("%d of %d inputs committed (%d commits, %d aborts, %d fatal, "
                                  "errors %s)" % (self.done_inputs(), self.args.count, self.commits,
                                                  self.aborts, self.fatal, dict(self.errors)))
                self.step()
        finally:
            stop.set()
            watchdog.join()
        seconds = time.monotonic() - started
        log("loop done in %.1fs: %d commits, %d aborts, %d fatal, %d retries, errors %s"
            % (seconds, self.commits, self.aborts, self.fatal, self.retries, dict(self.errors)))
        self.consumer.close()
        self.producer.flush(10)
        return seconds


def read_output(args, isolation):
    """Every record of the output below its high watermark, read with `isolation`:
    {partition: [value]} in offset order. Under read_committed the read reaches the high
    watermark only once every transaction on the partition is finished (the LSO caught up)."""
    hw_reader = Consumer({"bootstrap.servers": args.bootstrap,
                          "group.id": "eos-check-%s" % uuid.uuid4().hex,
                          "isolation.level": "read_uncommitted"})
    try:
        hw = {}
        deadline = Deadline(args.timeout, "the output's high watermarks")
        for p in range(args.partitions):
            while p not in hw:
                try:
                    _, hw[p] = hw_reader.get_watermark_offsets(
                        TopicPartition(args.output, p), timeout=deadline.step(5.0) or 0.1)
                except KafkaException as e:
                    log("watermarks: %s" % e)
                    if deadline.expired():
                        raise
                    deadline.sleep(0.2)
    finally:
        hw_reader.close()

    c = Consumer({"bootstrap.servers": args.bootstrap,
                  "group.id": "eos-check-%s" % uuid.uuid4().hex,
                  "isolation.level": isolation,
                  "enable.auto.commit": False,
                  "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100})
    got = {p: [] for p in range(args.partitions)}
    # Where each partition's last end-of-partition event stood (the LSO under read_committed).
    eof = {p: -1 for p in range(args.partitions)}
    try:
        c.assign([TopicPartition(args.output, p, OFFSET_BEGINNING) for p in range(args.partitions)])
        deadline = Deadline(args.timeout, "%s read of %s" % (isolation, args.output))
        while any(eof[p] < hw[p] for p in eof):
            if deadline.expired():
                deadline.fail("stopped at %s below the high watermarks %s (an unfinished "
                              "transaction holds the last stable offset?)" % (eof, hw))
            for m in c.consume(num_messages=1000, timeout=deadline.step(0.5)):
                err = m.error()
                if err is None:
                    got[m.partition()].append(m.value())
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof[m.partition()] = m.offset()
                elif err.retriable():
                    log("%s read (retried): %s" % (isolation, err))
                else:
                    raise KafkaException(err)
    finally:
        c.close()
    return got, hw


def check(args, loop, loop_seconds):
    committed, hw = read_output(args, "read_committed")
    uncommitted, _ = read_output(args, "read_uncommitted")
    counts = collections.Counter()
    foreign = []
    out_of_order = []
    for p, values in committed.items():
        ids = []
        for v in values:
            try:
                ids.append(int(v[len(b"out-"):]) if v.startswith(b"out-") else None)
            except ValueError:
                ids.append(None)
            if ids[-1] is None or not 0 <= ids[-1] < args.count:
                foreign.append(v)
        counts.update(i for i in ids if i is not None)
        ordered = [i for i in ids if i is not None]
        if ordered != sorted(ordered):
            j = next(j for j in range(1, len(ordered)) if ordered[j] < ordered[j - 1])
            out_of_order.append("partition %d: id %d after %d" % (p, ordered[j], ordered[j - 1]))
    lost = [i for i in range(args.count) if counts[i] == 0]
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    total = sum(len(v) for v in committed.values())
    report = {
        "inputs": args.count,
        "read_committed": total,
        "unique": len(counts),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "out_of_order": len(out_of_order),
        "uncommitted_total": sum(len(v) for v in uncommitted.values()),
        "commits": loop.commits,
        "aborts": loop.aborts,
        "fatal": loop.fatal,
        "retries": loop.retries,
        "rewinds": loop.rewinds,
        "rebalances": loop.rebalances,
        "restarts": loop.restarts,
        "dropped_batches": loop.dropped_batches,
        "recreated_consumers": loop.recreated_consumers,
        "errors": dict(loop.errors),
        "loop_seconds": round(loop_seconds, 1),
        "high_watermarks": hw,
        "lost_sample": lost[:10],
        "duplicated_sample": duplicated[:10],
    }
    write_atomic(args.out, json.dumps(report, sort_keys=True))
    problems = []
    if lost:
        problems.append("%d inputs missing from the output, e.g. %s" % (len(lost), lost[:10]))
    if duplicated:
        problems.append("%d inputs in the output more than once, e.g. %s"
                        % (len(duplicated), [(i, counts[i]) for i in duplicated[:10]]))
    if foreign:
        problems.append("%d output values that are no input's, e.g. %s" % (len(foreign), foreign[:5]))
    if out_of_order:
        problems.append("outputs out of input order: %s" % "; ".join(out_of_order[:3]))
    if problems:
        raise CheckFailed("eos-faults (%s): %s" % (json.dumps(
            {k: report[k] for k in ("read_committed", "uncommitted_total", "commits", "aborts",
                                    "fatal", "errors")}), "; ".join(problems)))
    ok("eos-faults: %d inputs, %d outputs read_committed, each input exactly once (0 lost, "
       "0 duplicated, in order per partition); %d transactions committed, %d aborted, %d fatal "
       "(fenced) restarts, %d retried calls; the log holds %d records read_uncommitted; loop %.1fs"
       % (args.count, total, loop.commits, loop.aborts, loop.fatal, loop.retries,
          report["uncommitted_total"], loop_seconds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--partitions", type=int, default=3, help="of both topics (created by the caller)")
    ap.add_argument("--group", required=True)
    ap.add_argument("--transactional-id", required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=30, help="input records per transaction, at most")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-seconds", type=float, default=240, help="bound of the whole loop")
    ap.add_argument("--timeout", type=float, default=60, help="bound of each other phase")
    args = ap.parse_args()

    produce_inputs(args)
    loop = Loop(args)
    seconds = loop.run()
    check(args, loop, seconds)


if __name__ == "__main__":
    run_main(main)
