// Topics: the list with create and delete; one topic's partitions (leader, replicas, ISR, log
// start/end, size), its configs (set and revert), growing its partition count, and a message
// browser by partition and offset showing key, value and headers.
import { useState } from 'preact/hooks';
import { api, usePoll, enc } from './api.js';
import { html, ErrorBox, Loading, Table, Badge } from './ui.js';
import { bytes, num, list, time } from './format.js';

/** `k=v` per line (blank lines and # comments ignored) → {k: v}; throws on a line without `=`. */
function parseConfigs(text) {
  const out = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`config line "${line}" is not key=value`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

function CreateTopic({ onCreated }) {
  const [name, setName] = useState('');
  const [partitions, setPartitions] = useState('3');
  const [rf, setRf] = useState('3');
  const [configs, setConfigs] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const body = {
        topicName: name.trim(),
        numPartitions: Number(partitions),
        replicationFactor: Number(rf),
        config: parseConfigs(configs),
      };
      const t = await api('/ui/api/topics', { method: 'POST', body });
      setDone(`Created topic ${t.topicName} (${t.numPartitions} partitions, replication factor ${t.replicationFactor}).`);
      setName('');
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="panel form" onSubmit=${submit} id="create-topic">
    <h2>Create a topic</h2>
    <label>Name <input name="topicName" required value=${name} onInput=${(e) => setName(e.target.value)} placeholder="orders" /></label>
    <label>Partitions <input name="numPartitions" type="number" min="1" value=${partitions} onInput=${(e) => setPartitions(e.target.value)} /></label>
    <label>Replication factor <input name="replicationFactor" type="number" min="1" value=${rf} onInput=${(e) => setRf(e.target.value)} /></label>
    <label class="wide">Configs (key=value per line) <textarea name="config" rows="2" value=${configs} onInput=${(e) => setConfigs(e.target.value)} placeholder="retention.ms=86400000"></textarea></label>
    <div class="actions"><button type="submit" disabled=${busy}>${busy ? 'Creating…' : 'Create topic'}</button></div>
    <${ErrorBox} error=${error} what="Create topic" />
    ${done ? html`<p class="ok" role="status">${done}</p>` : ''}
  </form>`;
}

/** A delete button that asks again inline (no browser dialog: works the same on phones). */
function DeleteTopic({ name, onDeleted }) {
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState(null);
  const del = async () => {
    setError(null);
    try {
      await api(`/ui/api/topics/${enc(name)}`, { method: 'DELETE' });
      setAsking(false);
      onDeleted();
    } catch (err) {
      setError(err);
    }
  };
  return html`<span class="delete">
    ${asking
      ? html`<button class="danger" onClick=${del}>Delete ${name} and its data</button> <button onClick=${() => setAsking(false)}>Cancel</button>`
      : html`<button class="subtle" onClick=${() => setAsking(true)}>Delete</button>`}
    <${ErrorBox} error=${error} what="Delete" />
  </span>`;
}

export function Topics() {
  const { data, error, refresh } = usePoll(() => api('/api/v1/metadata/topics'), 3000);
  return html`
    <h1>Topics</h1>
    <${CreateTopic} onCreated=${refresh} />
    <${ErrorBox} error=${error} what="Listing topics" />
    ${!data ? (error ? '' : html`<${Loading} what="topics" />`) : html`
      <${Table} head=${['topic', 'partitions', 'replication factor', 'under-replicated', 'leaderless', 'configs', '']} id="topics">
        ${data.map((t) => {
          const under = t.partitions.filter((p) => p.isr.length < p.replicas.length).length;
          const leaderless = t.partitions.filter((p) => p.leader < 0).length;
          return html`<tr data-topic=${t.topicName}>
            <td><a href=${'#/topics/' + enc(t.topicName)}>${t.topicName}</a></td>
            <td>${t.numPartitions}</td><td>${t.replicationFactor}</td>
            <td class=${under ? 'warn-text' : ''}>${under}</td>
            <td class=${leaderless ? 'bad-text' : ''}>${leaderless}</td>
            <td class="muted">${Object.keys(t.config || {}).length || '–'}</td>
            <td><${DeleteTopic} name=${t.topicName} onDeleted=${refresh} /></td></tr>`;
        })}
      <//>
      ${data.length === 0 ? html`<p class="muted">No topics yet.</p>` : ''}`}`;
}

function AlterPartitions({ topic, onDone }) {
  const [count, setCount] = useState(String(topic.numPartitions + 1));
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    try {
      const t = await api(`/ui/api/topics/${enc(topic.topicName)}/partitions`, { method: 'POST', body: { numPartitions: Number(count) } });
      setDone(`${t.topicName} now has ${t.numPartitions} partitions.`);
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="panel form" onSubmit=${submit} id="alter-partitions">
    <h2>Add partitions</h2>
    <label>New partition count <input type="number" min=${topic.numPartitions + 1} value=${count} onInput=${(e) => setCount(e.target.value)} /></label>
    <div class="actions"><button type="submit">Grow topic</button></div>
    <${ErrorBox} error=${error} what="Add partitions" />
    ${done ? html`<p class="ok" role="status">${done}</p>` : ''}
  </form>`;
}

function Configs({ topic, onDone }) {
  const [set, setSet] = useState('');
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const change = async (body) => {
    setError(null);
    setDone(null);
    try {
      await api(`/ui/api/topics/${enc(topic.topicName)}/config`, { method: 'PATCH', body });
      setDone('Configs changed.');
      setSet('');
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  const submit = (e) => {
    e.preventDefault();
    try {
      change({ set: parseConfigs(set) });
    } catch (err) {
      setError(err);
    }
  };
  const entries = Object.entries(topic.config || {});
  return html`<div class="panel" id="topic-configs">
    <h2>Configs</h2>
    ${entries.length
      ? html`<${Table} head=${['key', 'value', '']}>
          ${entries.map(([k, v]) => html`<tr data-config=${k}><td>${k}</td><td>${v}</td>
            <td><button class="subtle" onClick=${() => change({ delete: [k] })}>Revert to default</button></td></tr>`)}
        <//>`
      : html`<p class="muted">Every config has its default (or the cluster's dynamic default).</p>`}
    <form class="form" onSubmit=${submit}>
      <label class="wide">Set (key=value per line) <textarea rows="2" value=${set} onInput=${(e) => setSet(e.target.value)} placeholder="retention.ms=3600000"></textarea></label>
      <div class="actions"><button type="submit">Set configs</button></div>
    </form>
    <${ErrorBox} error=${error} what="Change configs" />
    ${done ? html`<p class="ok" role="status">${done}</p>` : ''}
  </div>`;
}

export function TopicDetail({ name }) {
  const { data, error, refresh } = usePoll(() => api(`/ui/api/topics/${enc(name)}`), 2000, [name]);
  if (!data) {
    return html`<h1>Topic ${name}</h1><p><a href="#/topics">← all topics</a></p>
      <${ErrorBox} error=${error} what=${`Topic ${name}`} />${error ? '' : html`<${Loading} what="the topic" />`}`;
  }
  const errs = Object.entries(data.brokerErrors || {});
  return html`
    <h1>Topic ${data.topicName}</h1>
    <p><a href="#/topics">← all topics</a> · ${data.numPartitions} partitions · replication factor ${data.replicationFactor}${' '}
      · <span class="muted">id ${data.topicId}</span></p>
    <${ErrorBox} error=${error} what="Refreshing (showing the last answer)" />
    ${errs.map(([b, e]) => html`<div class="error" role="alert">Broker ${b} did not report its partitions: ${e}</div>`)}
    <h2>Partitions</h2>
    <${Table} head=${['partition', 'leader', 'epoch', 'replicas', 'ISR', 'log start', 'log end', 'high watermark', 'size']} id="partitions">
      ${data.partitions.map((p) => html`<tr data-partition=${p.partitionId} data-leader=${p.leader}>
        <td>${p.partitionId}</td>
        <td>${p.offline ? html`<${Badge} kind="bad">${p.leader < 0 ? 'none' : `${p.leader} (offline)`}<//>` : p.leader}</td>
        <td>${p.leaderEpoch}</td><td>${list(p.replicas)}</td>
        <td>${list(p.isr)}${p.underReplicated ? html` <${Badge} kind="warn">under-replicated<//>` : ''}</td>
        <td>${num(p.logStartOffset)}</td><td>${num(p.logEndOffset)}</td><td>${num(p.highWatermark)}</td>
        <td>${bytes(p.sizeBytes)}</td></tr>`)}
    <//>
    <${Browser} topic=${data} onLoaded=${refresh} />
    <div class="two">
      <${Configs} topic=${data} onDone=${refresh} />
      <${AlterPartitions} topic=${data} onDone=${refresh} />
    </div>`;
}

const PAGE_SIZES = [10, 50, 200];

/** The message browser: records of one partition from an offset, with paging. */
function Browser({ topic, onLoaded }) {
  const [partition, setPartition] = useState('0');
  const [offset, setOffset] = useState('0');
  const [limit, setLimit] = useState(50);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const load = async (from) => {
    setBusy(true);
    setError(null);
    try {
      const o = Math.max(0, Number(from));
      setOffset(String(o));
      const r = await api(`/ui/api/topics/${enc(topic.topicName)}/partitions/${Number(partition)}/records?offset=${o}&limit=${limit}`);
      setPage(r);
      onLoaded();
    } catch (err) {
      setError(err);
      setPage(null);
    } finally {
      setBusy(false);
    }
  };
  const p = topic.partitions.find((x) => String(x.partitionId) === partition);
  const start = p && p.logStartOffset !== null ? p.logStartOffset : 0;
  const end = p && p.highWatermark !== null ? p.highWatermark : null;
  return html`<section class="panel" id="message-browser">
    <h2>Messages</h2>
    <form class="form inline" onSubmit=${(e) => { e.preventDefault(); load(offset); }}>
      <label>Partition <select name="partition" value=${partition} onChange=${(e) => setPartition(e.target.value)}>
        ${topic.partitions.map((x) => html`<option value=${String(x.partitionId)}>${x.partitionId}</option>`)}
      </select></label>
      <label>From offset <input name="offset" type="number" min="0" value=${offset} onInput=${(e) => setOffset(e.target.value)} /></label>
      <label>Show <select name="limit" value=${limit} onChange=${(e) => setLimit(Number(e.target.value))}>
        ${PAGE_SIZES.map((n) => html`<option value=${n}>${n}</option>`)}
      </select></label>
      <div class="actions">
        <button type="submit" disabled=${busy}>Load</button>
        <button type="button" onClick=${() => load(start)}>Oldest</button>
        <button type="button" disabled=${end === null} onClick=${() => load(Math.max(start, end - limit))}>Newest</button>
        ${page ? html`<button type="button" disabled=${page.nextOffset >= page.highWatermark} onClick=${() => load(page.nextOffset)}>Next page</button>` : ''}
      </div>
    </form>
    <p class="muted">Offsets ${num(start)} to ${end === null ? '?' : num(end - 1)} are readable (below the high watermark).</p>
    <${ErrorBox} error=${error} what="Reading records" />
    ${page ? html`
      <${Table} head=${['offset', 'key', 'value', 'headers', 'timestamp']} id="records">
        ${page.records.map((r) => html`<tr data-offset=${r.offset}>
          <td>${r.offset}</td>
          <td><code>${r.key === null ? html`<span class="muted">null</span>` : r.key}</code></td>
          <td><pre class="value">${r.value === null ? 'null (tombstone)' : r.value}</pre>${r.encoding === 'base64' ? html`<span class="muted">base64</span>` : ''}</td>
          <td>${Object.entries(r.headers || {}).map(([k, v]) => html`<div class="header"><code>${k}</code>: <code>${v === null ? 'null' : v}</code></div>`)}</td>
          <td class="nowrap">${time(r.timestamp)}</td>
        </tr>`)}
      <//>
      <p class="muted" role="status">${page.records.length} record(s) from offset ${num(Number(offset))}; next offset ${num(page.nextOffset)}, high watermark ${num(page.highWatermark)}.</p>` : ''}
  </section>`;
}
