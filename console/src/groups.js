// Consumer groups: the list with state, members and total lag; one group's members and their
// assignments, committed offsets with log end and lag per partition, and resetting offsets
// (only for a group without active members, as Kafka requires).
import { useState } from 'preact/hooks';
import { api, usePoll, enc } from './api.js';
import { html, ErrorBox, Loading, Table, Badge, Card } from './ui.js';
import { num, ago } from './format.js';

export function Groups() {
  const { data, error } = usePoll(() => api('/ui/api/groups'), 2000);
  return html`
    <h1>Consumer groups</h1>
    <${ErrorBox} error=${error} what="Listing groups" />
    ${!data ? (error ? '' : html`<${Loading} what="groups" />`) : html`
      <${Table} head=${['group', 'state', 'members', 'coordinator', 'partitions', 'total lag']} id="groups">
        ${data.map((g) => html`<tr data-group=${g.groupId}>
          <td><a href=${'#/groups/' + enc(g.groupId)}>${g.groupId}</a></td>
          <td><${Badge} kind=${g.state === 'Stable' ? 'good' : 'plain'}>${g.state}<//></td>
          <td>${num(g.members)}</td><td>${g.coordinator ?? '–'}</td><td>${num(g.partitions)}</td>
          <td data-testid="total-lag">${num(g.totalLag)}</td></tr>`)}
      <//>
      ${data.length === 0 ? html`<p class="muted">No consumer group has members or committed offsets.</p>` : ''}`}`;
}

function assignmentText(a) {
  if (a === null || a === undefined) return '(not a consumer-protocol assignment)';
  if (!a.length) return '(none yet)';
  return a.map((t) => `${t.topic}: ${t.partitions.join(', ')}`).join('; ');
}

function ResetOffsets({ group, onDone }) {
  const [to, setTo] = useState('earliest');
  const [offset, setOffset] = useState('0');
  const [topic, setTopic] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const active = group.members.length > 0;
  const run = async (dryRun) => {
    setError(null);
    setResult(null);
    try {
      const body = { to, dryRun };
      if (to === 'offset') body.offset = Number(offset);
      if (topic) body.topic = topic;
      const r = await api(`/ui/api/groups/${enc(group.groupId)}/reset-offsets`, { method: 'POST', body });
      setResult(r);
      if (!dryRun) onDone();
    } catch (err) {
      setError(err);
    }
  };
  const topics = [...new Set(group.partitions.map((p) => p.topic))];
  return html`<section class="panel" id="reset-offsets">
    <h2>Reset offsets</h2>
    ${active ? html`<p class="warn-text">The group has ${group.members.length} active member(s): stop them first (Kafka allows resets only for empty groups).</p>` : ''}
    <form class="form inline" onSubmit=${(e) => { e.preventDefault(); run(false); }}>
      <label>To <select name="to" value=${to} onChange=${(e) => setTo(e.target.value)}>
        <option value="earliest">earliest (log start)</option>
        <option value="latest">latest (high watermark)</option>
        <option value="offset">offset</option>
      </select></label>
      ${to === 'offset' ? html`<label>Offset <input type="number" min="0" value=${offset} onInput=${(e) => setOffset(e.target.value)} /></label>` : ''}
      <label>Topic <select value=${topic} onChange=${(e) => setTopic(e.target.value)}>
        <option value="">every committed topic</option>
        ${topics.map((t) => html`<option value=${t}>${t}</option>`)}
      </select></label>
      <div class="actions">
        <button type="button" onClick=${() => run(true)}>Preview</button>
        <button type="submit" class="danger" disabled=${active}>Reset offsets</button>
      </div>
    </form>
    <${ErrorBox} error=${error} what="Reset offsets" />
    ${result ? html`<p class="ok" role="status">${result.dryRun ? 'Preview (nothing committed)' : 'Offsets reset'}: ${result.partitions.map((p) => `${p.topic}-${p.partition}: ${p.previousOffset ?? '–'} → ${p.newOffset}`).join(', ')}</p>` : ''}
  </section>`;
}

export function GroupDetail({ id }) {
  const { data, error, refresh } = usePoll(() => api(`/ui/api/groups/${enc(id)}`), 2000, [id]);
  if (!data) {
    return html`<h1>Group ${id}</h1><p><a href="#/groups">← all groups</a></p>
      <${ErrorBox} error=${error} what=${`Group ${id}`} />${error ? '' : html`<${Loading} what="the group" />`}`;
  }
  const owner = new Map();
  for (const m of data.members) {
    for (const t of m.assignment || []) for (const p of t.partitions) owner.set(`${t.topic}/${p}`, m);
  }
  return html`
    <h1>Group ${data.groupId}</h1>
    <p><a href="#/groups">← all groups</a></p>
    <${ErrorBox} error=${error} what="Refreshing (showing the last answer)" />
    ${data.membershipError ? html`<div class="error" role="alert">Members unknown: ${data.membershipError}</div>` : ''}
    <section class="cards">
      <${Card} label="state" value=${data.state} testid="group-state" />
      <${Card} label="members" value=${data.members.length} testid="group-members" />
      <${Card} label="total lag" value=${num(data.totalLag)} kind=${data.totalLag > 0 ? 'warn' : ''} testid="group-total-lag" />
      <${Card} label="generation" value=${data.generation ?? '–'} />
      <${Card} label="coordinator" value=${data.coordinator ?? '–'} />
    </section>
    <h2>Members</h2>
    ${data.members.length
      ? html`<${Table} head=${['member', 'client id', 'host', 'assigned partitions']} id="members">
          ${data.members.map((m) => html`<tr>
            <td><code>${m.memberId}</code>${m.memberId === data.leader ? html` <${Badge} kind="plain">leader<//>` : ''}</td>
            <td>${m.clientId}</td><td>${m.clientHost}</td><td>${assignmentText(m.assignment)}</td></tr>`)}
        <//>`
      : html`<p class="muted" id="members">No active members.</p>`}
    <h2>Committed offsets and lag</h2>
    ${data.partitions.length
      ? html`<${Table} head=${['topic', 'partition', 'committed', 'log end', 'lag', 'member', 'committed at']} id="offsets">
          ${data.partitions.map((p) => html`<tr data-topic=${p.topic} data-partition=${p.partition} data-lag=${p.lag ?? ''}>
            <td><a href=${'#/topics/' + enc(p.topic)}>${p.topic}</a></td><td>${p.partition}</td>
            <td>${num(p.committedOffset)}</td><td>${num(p.logEndOffset)}</td>
            <td class=${p.lag > 0 ? 'warn-text' : ''}>${num(p.lag)}</td>
            <td class="muted">${owner.has(`${p.topic}/${p.partition}`) ? owner.get(`${p.topic}/${p.partition}`).clientId : '–'}</td>
            <td class="muted">${ago(p.commitTimestamp)}</td></tr>`)}
        <//>`
      : html`<p class="muted">No committed offsets.</p>`}
    <${ResetOffsets} group=${data} onDone=${refresh} />`;
}
