// Live charts from the brokers' /metrics (scraped through /ui/api/metrics every 2 s): bytes and
// records in/out per second per topic, and produce/fetch latency p99 from the request-latency
// histogram's bucket deltas. A metric a broker does not expose shows as "no data".
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './api.js';
import { html, ErrorBox } from './ui.js';
import { parsePrometheus, sumBy, buckets, rate, quantileFromDelta } from './prom.js';
import { bytes, num } from './format.js';

const SCRAPE_MS = 2000;
/** Points kept per series: 5 minutes at one scrape per 2 s. */
const POINTS_MAX = 150;
/** Topics drawn per chart (the busiest ones). */
const TOPICS_MAX = 8;
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

const COUNTERS = {
  bytesIn: 'kafka_server_brokertopicmetrics_bytes_in_total',
  bytesOut: 'kafka_server_brokertopicmetrics_bytes_out_total',
  recordsIn: 'kafka_server_brokertopicmetrics_messages_in_total',
  recordsOut: 'kafka_server_brokertopicmetrics_messages_out_total',
};
const LATENCY = 'kafka_request_latency_seconds_bucket';
const LATENCY_REQUESTS = ['Produce', 'Fetch'];

/** One scrape, reduced to what the charts use, per broker. */
function reduce(scrape) {
  const brokers = new Map();
  for (const b of scrape.brokers) {
    if (typeof b.text !== 'string') continue;
    const samples = parsePrometheus(b.text);
    const counters = {};
    for (const [k, name] of Object.entries(COUNTERS)) counters[k] = sumBy(samples, name, 'topic');
    const hist = {};
    for (const r of LATENCY_REQUESTS) hist[r] = buckets(samples, LATENCY, 'request', r);
    brokers.set(b.brokerId, { counters, hist });
  }
  return { t: scrape.timestamp / 1000, brokers };
}

/** Summed per-topic rates of counter `key` between two reduced scrapes. */
function topicRates(prev, cur, key) {
  const seconds = cur.t - prev.t;
  const out = new Map();
  for (const [id, b] of cur.brokers) {
    const p = prev.brokers.get(id);
    if (!p) continue;
    for (const [topic, v] of b.counters[key]) {
      const r = rate(p.counters[key].get(topic) ?? 0, v, seconds);
      if (r !== null) out.set(topic, (out.get(topic) || 0) + r);
    }
  }
  return out;
}

/** p99 in ms of request `r` over every broker, from bucket deltas between two scrapes. */
function p99(prev, cur, r) {
  const delta = new Map();
  for (const [id, b] of cur.brokers) {
    const p = prev.brokers.get(id);
    if (!p || !b.hist[r].size) continue;
    for (const [le, c] of b.hist[r]) {
      const before = p.hist[r].get(le);
      const d = before === undefined || c < before ? c : c - before;
      delta.set(le, (delta.get(le) || 0) + d);
    }
  }
  const q = quantileFromDelta(null, delta, 0.99);
  return q === null ? null : q * 1000;
}

/** Chart history: x (seconds) and one array per chart per series, aligned to x. */
function emptyHistory() {
  return { x: [], charts: {} };
}

function push(history, chart, values, t) {
  const c = (history.charts[chart] ||= new Map());
  const n = history.x.length; // x already holds t
  for (const [series, v] of values) {
    if (!c.has(series)) c.set(series, new Array(n - 1).fill(null));
  }
  for (const [series, arr] of c) arr.push(values.has(series) ? values.get(series) : null);
  void t;
}

function trim(history) {
  const extra = history.x.length - POINTS_MAX;
  if (extra <= 0) return;
  history.x.splice(0, extra);
  for (const c of Object.values(history.charts)) for (const arr of c.values()) arr.splice(0, extra);
}

export function Charts() {
  const [tick, setTick] = useState(0);
  const [error, setError] = useState(null);
  const [brokerErrors, setBrokerErrors] = useState([]);
  const state = useRef({ prev: null, history: emptyHistory(), seen: new Set() });
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const scrape = async () => {
      try {
        const raw = await api('/ui/api/metrics');
        const cur = reduce(raw);
        setBrokerErrors(raw.brokers.filter((b) => b.error).map((b) => `broker ${b.brokerId}: ${b.error}`));
        const s = state.current;
        for (const b of cur.brokers.values()) {
          for (const [k, m] of Object.entries(b.counters)) if (m.size) s.seen.add(k);
          for (const r of LATENCY_REQUESTS) if (b.hist[r].size) s.seen.add(r);
        }
        if (s.prev && cur.t > s.prev.t) {
          s.history.x.push(cur.t);
          for (const k of Object.keys(COUNTERS)) push(s.history, k, topicRates(s.prev, cur, k), cur.t);
          for (const r of LATENCY_REQUESTS) {
            const lat = new Map();
            if (s.seen.has(r)) lat.set('p99', p99(s.prev, cur, r));
            push(s.history, `latency${r}`, lat, cur.t);
          }
          trim(s.history);
        }
        s.prev = cur;
        setError(null);
        setTick((n) => n + 1);
      } catch (err) {
        setError(err);
      }
      if (!stopped) timer = setTimeout(scrape, SCRAPE_MS);
    };
    scrape();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  const { history, seen } = state.current;
  const rateFmt = (v) => (v === null || v === undefined ? '–' : `${bytes(v)}/s`);
  const countFmt = (v, axis) => (v === null || v === undefined ? '–' : axis ? `${compact(v)}/s` : `${num(Math.round(v))}/s`);
  const msFmt = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(v < 1 ? 3 : v < 10 ? 2 : 0)} ms`);
  return html`
    <h1>Live charts</h1>
    <p class="muted">From every ONLINE broker's <code>/metrics</code>, scraped every ${SCRAPE_MS / 1000} s while this page is open (last ${POINTS_MAX} points).</p>
    <${ErrorBox} error=${error} what="Scraping metrics" />
    ${brokerErrors.length ? html`<p class="warn-text">Not scraped: ${brokerErrors.join('; ')}</p>` : ''}
    <div class="charts">
      <${Chart} id="chart-bytes-in" title="Bytes in per topic" history=${history} chart="bytesIn" fmt=${rateFmt} has=${seen.has('bytesIn')} metric=${COUNTERS.bytesIn} tick=${tick} />
      <${Chart} id="chart-bytes-out" title="Bytes out per topic" history=${history} chart="bytesOut" fmt=${rateFmt} has=${seen.has('bytesOut')} metric=${COUNTERS.bytesOut} tick=${tick} />
      <${Chart} id="chart-records-in" title="Records in per topic" history=${history} chart="recordsIn" fmt=${countFmt} has=${seen.has('recordsIn')} metric=${COUNTERS.recordsIn} tick=${tick} />
      <${Chart} id="chart-records-out" title="Records out per topic" history=${history} chart="recordsOut" fmt=${countFmt} has=${seen.has('recordsOut')} metric=${COUNTERS.recordsOut} tick=${tick} />
      <${Chart} id="chart-produce-latency" title="Produce latency p99" history=${history} chart="latencyProduce" fmt=${msFmt} has=${seen.has('Produce')} metric=${LATENCY + '{request="Produce"}'} tick=${tick} />
      <${Chart} id="chart-fetch-latency" title="Fetch latency p99 (includes fetch.max.wait of long polls)" history=${history} chart="latencyFetch" fmt=${msFmt} has=${seen.has('Fetch')} metric=${LATENCY + '{request="Fetch"}'} tick=${tick} />
    </div>`;
}

/** 1234 → "1.2k": short tick labels. */
function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return `${Math.round(v * 10) / 10}`;
}

/** The busiest series of a chart (by their latest non-null value). */
function pick(series) {
  const last = (arr) => {
    for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null) return arr[i];
    return 0;
  };
  return [...series.entries()].sort((a, b) => last(b[1]) - last(a[1]) || a[0].localeCompare(b[0])).slice(0, TOPICS_MAX)
    .sort((a, b) => a[0].localeCompare(b[0]));
}

function Chart({ id, title, history, chart, fmt, has, metric, tick }) {
  const box = useRef(null);
  const plot = useRef(null);
  const series = history.charts[chart] || new Map();
  const shown = pick(series);
  const key = shown.map(([name]) => name).join('\u0000');
  const ready = has && history.x.length >= 2 && shown.length > 0;
  useEffect(() => {
    if (!ready || !box.current) return undefined;
    const width = Math.max(260, box.current.clientWidth);
    const opts = {
      width,
      height: 200,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => fmt(v, true)), size: 96 }],
      series: [{}, ...shown.map(([name], i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false, value: (u, v) => fmt(v) }))],
    };
    const u = new uPlot(opts, [history.x.slice(), ...shown.map(([, arr]) => arr.slice())], box.current);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      if (box.current) u.setSize({ width: Math.max(260, box.current.clientWidth), height: 200 });
    });
    ro.observe(box.current);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [ready, key]);
  useEffect(() => {
    if (plot.current && ready) plot.current.setData([history.x.slice(), ...shown.map(([, arr]) => arr.slice())]);
  }, [tick]);
  let note = null;
  if (!has) note = html`<p class="nodata">no data — no broker exposes <code>${metric}</code> yet</p>`;
  else if (!ready) note = html`<p class="nodata">no data yet — waiting for a second scrape${shown.length ? '' : ' with traffic'}</p>`;
  return html`<figure class="panel chart" id=${id} data-ready=${ready ? 'true' : 'false'} data-points=${history.x.length}>
    <figcaption>${title}</figcaption>
    ${note}
    <div ref=${box} class="plot"></div>
  </figure>`;
}
