// Overview: the controller, the Raft members (term, commit, applied, lag), the brokers (state,
// partition counts, last heartbeat), under-replicated and offline partitions.
import { api, usePoll } from './api.js';
import { html, ErrorBox, Loading, Table, Badge, Card } from './ui.js';
import { ago, num, list } from './format.js';

/** Polled fast so that a dead broker shows OFFLINE within a second of the controller's verdict. */
const OVERVIEW_POLL_MS = 300;

export function Overview() {
  const { data, error } = usePoll(() => api('/ui/api/overview'), OVERVIEW_POLL_MS);
  if (!data) return html`<${ErrorBox} error=${error} what="Cluster overview" />${error ? '' : html`<${Loading} what="the cluster" />`}`;
  const online = data.brokers.filter((b) => b.status === 'ONLINE').length;
  const c = data.controller;
  return html`
    <h1>Cluster overview</h1>
    <${ErrorBox} error=${error} what="Refreshing the overview (showing the last answer)" />
    <section class="cards">
      <${Card} label="controller (term ${num(c.controllerTerm)})" value=${c.controllerId ?? 'none'} kind=${c.controllerId ? '' : 'bad'} testid="controller" />
      <${Card} label="brokers online" value=${`${online} / ${data.brokers.length}`} kind=${online < data.brokers.length ? 'warn' : ''} testid="brokers-online" />
      <${Card} label="topics" value=${num(data.topics)} testid="topics" />
      <${Card} label="partitions" value=${num(data.partitions)} testid="partitions" />
      <${Card} label="under-replicated" value=${data.underReplicated.length} kind=${data.underReplicated.length ? 'warn' : ''} testid="under-replicated" />
      <${Card} label="offline partitions" value=${data.offline.length} kind=${data.offline.length ? 'bad' : ''} testid="offline" />
      <${Card} label="metadata version" value=${num(data.version)} testid="version" />
    </section>

    <h2>Metadata quorum (Raft)</h2>
    <${Table} head=${['node', 'state', 'term', 'commit index', 'applied', 'lag', 'URL']} id="raft-members">
      ${data.raftMembers.map((m) => html`<tr data-node-id=${m.nodeId} data-state=${m.state || 'UNREACHABLE'}>
        <td>${m.nodeId}${m.nodeId === data.servedBy ? html` <span class="muted">(this node)</span>` : ''}</td>
        ${m.reachable
          ? html`<td><${Badge} kind=${m.state === 'LEADER' ? 'good' : 'plain'}>${m.state}<//></td>
              <td>${num(m.currentTerm)}</td><td>${num(m.commitIndex)}</td><td>${num(m.lastApplied)}</td>
              <td class=${m.lag > 100 ? 'warn-text' : ''}>${num(m.lag)}</td>`
          : html`<td><${Badge} kind="bad">UNREACHABLE<//></td><td colspan="4" class="muted">${m.error}</td>`}
        <td><a href=${m.url + '/ui/'}>${m.url}</a></td>
      </tr>`)}
    <//>

    <h2>Brokers</h2>
    <${Table} head=${['broker', 'state', 'replicas', 'leaders', 'last heartbeat', 'HTTP', 'Kafka']} id="brokers">
      ${data.brokers.map((b) => html`<tr data-broker-id=${b.brokerId} data-status=${b.status}>
        <td>${b.brokerId}</td>
        <td><${Badge} kind=${b.status === 'ONLINE' ? 'good' : 'bad'}>${b.status}<//></td>
        <td>${num(b.replicas)}</td><td>${num(b.leaders)}</td><td class="nowrap">${ago(b.lastHeartbeat)}</td>
        <td>${b.host}:${b.port}</td><td>${b.host}:${b.kafkaPort}</td>
      </tr>`)}
    <//>
    ${data.brokers.length === 0 ? html`<p class="muted">No broker has registered yet.</p>` : ''}

    <h2>Offline partitions <span class="count">${data.offline.length}</span></h2>
    ${data.offline.length
      ? html`<${PartitionRows} rows=${data.offline} id="offline-partitions" />`
      : html`<p class="muted" id="offline-partitions">Every partition has an ONLINE leader.</p>`}

    <h2>Under-replicated partitions <span class="count">${data.underReplicated.length}</span></h2>
    ${data.underReplicated.length
      ? html`<${PartitionRows} rows=${data.underReplicated} id="under-replicated-partitions" />`
      : html`<p class="muted" id="under-replicated-partitions">Every ISR is complete.</p>`}`;
}

function PartitionRows({ rows, id }) {
  return html`<${Table} head=${['topic', 'partition', 'leader', 'replicas', 'ISR']} id=${id}>
    ${rows.map((p) => html`<tr>
      <td><a href=${'#/topics/' + encodeURIComponent(p.topic)}>${p.topic}</a></td>
      <td>${p.partition}</td><td>${p.leader < 0 ? 'none' : p.leader}</td>
      <td>${list(p.replicas)}</td><td>${list(p.isr)}</td></tr>`)}
  <//>`;
}
