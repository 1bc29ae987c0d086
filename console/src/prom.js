// The Prometheus text exposition format, and the arithmetic the charts need: per-second rates
// of counters from successive scrapes, and a quantile from histogram bucket deltas (as
// Prometheus's histogram_quantile does). Pure functions: no DOM, no fetch.

const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(v) {
  return v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
}

function parseValue(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s);
}

/** Samples of a scrape: [{name, labels: {k: v}, value}]; comments and junk lines are skipped. */
export function parsePrometheus(text) {
  const out = [];
  for (const raw of String(text || '').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let name;
    let labels = {};
    let rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = line.lastIndexOf('}');
      if (close < brace) continue;
      name = line.slice(0, brace);
      const body = line.slice(brace + 1, close);
      for (const m of body.matchAll(LABEL)) labels[m[1]] = unescape(m[2]);
      rest = line.slice(close + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = parseValue(rest.split(/\s+/)[0]);
    if (Number.isNaN(value) && rest.split(/\s+/)[0] !== 'NaN') continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** Sum of `name` by the value of label `by` (e.g. per topic), over every sample. */
export function sumBy(samples, name, by) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = s.labels[by];
    if (k === undefined) continue;
    out.set(k, (out.get(k) || 0) + s.value);
  }
  return out;
}

/** Cumulative bucket counts of histogram `name` for `request`: Map(le → count), summed. */
export function buckets(samples, name, label, value) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name || s.labels[label] !== value || s.labels.le === undefined) continue;
    const le = parseValue(s.labels.le);
    out.set(le, (out.get(le) || 0) + s.value);
  }
  return out;
}

/**
 * Per-second rate between two counter readings of one source; a counter that went down was
 * reset (the broker restarted), so the new reading is the increase.
 */
export function rate(prev, cur, seconds) {
  if (prev === undefined || cur === undefined || !(seconds > 0)) return null;
  const inc = cur >= prev ? cur - prev : cur;
  return inc / seconds;
}

/**
 * The q-quantile (0 < q < 1) of what was observed between two readings of a histogram's
 * cumulative buckets (Map le → count), interpolated linearly within the bucket it falls in.
 * null when nothing was observed in between.
 */
export function quantileFromDelta(prev, cur, q) {
  const les = [...cur.keys()].sort((a, b) => a - b);
  if (!les.length) return null;
  const delta = les.map((le) => {
    const c = cur.get(le);
    const p = prev ? prev.get(le) : undefined;
    return p === undefined || c < p ? c : c - p;
  });
  const total = delta[delta.length - 1];
  if (!(total > 0) || les[les.length - 1] !== Infinity) return null;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    if (delta[i] >= rank) {
      if (les[i] === Infinity) return i > 0 ? les[i - 1] : null;
      const lo = i > 0 ? les[i - 1] : 0;
      const below = i > 0 ? delta[i - 1] : 0;
      const inBucket = delta[i] - below;
      if (inBucket <= 0) return les[i];
      return lo + (les[i] - lo) * ((rank - below) / inBucket);
    }
  }
  return null;
}
