// node --test console/src/prom.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheus, sumBy, buckets, rate, quantileFromDelta } from './prom.js';

const TEXT = `# HELP kafka_server_brokertopicmetrics_bytes_in_total Bytes in.
# TYPE kafka_server_brokertopicmetrics_bytes_in_total counter
kafka_server_brokertopicmetrics_bytes_in_total{topic="a"} 100
kafka_server_brokertopicmetrics_bytes_in_total{topic="b",broker="1"} 50
kafka_request_latency_seconds_bucket{request="Produce",le="0.001"} 10
kafka_request_latency_seconds_bucket{request="Produce",le="0.01"} 90
kafka_request_latency_seconds_bucket{request="Produce",le="+Inf"} 100
kafka_request_latency_seconds_count{request="Produce"} 100
weird{label="with \\"quote\\", comma"} 1 1700000000000
garbage line
`;

test('parses samples, labels and escapes', () => {
  const s = parsePrometheus(TEXT);
  assert.equal(s.length, 7);
  assert.equal(s[6].labels.label, 'with "quote", comma');
  const m = sumBy(s, 'kafka_server_brokertopicmetrics_bytes_in_total', 'topic');
  assert.deepEqual([...m], [['a', 100], ['b', 50]]);
  assert.equal(buckets(s, 'kafka_request_latency_seconds_bucket', 'request', 'Produce').get(Infinity), 100);
});

test('rates survive counter resets', () => {
  assert.equal(rate(10, 30, 2), 10);
  assert.equal(rate(30, 4, 2), 2);
  assert.equal(rate(undefined, 4, 2), null);
});

test('p99 interpolates inside the bucket, from deltas', () => {
  const prev = new Map([[0.001, 0], [0.01, 0], [Infinity, 0]]);
  const cur = new Map([[0.001, 10], [0.01, 90], [Infinity, 100]]);
  // rank 99 falls in the +Inf bucket: the highest finite bound.
  assert.equal(quantileFromDelta(prev, cur, 0.99), 0.01);
  // rank 50 is 40 of 80 into (0.001, 0.01].
  assert.ok(Math.abs(quantileFromDelta(prev, cur, 0.5) - 0.0055) < 1e-12);
  assert.equal(quantileFromDelta(cur, cur, 0.99), null);
});
