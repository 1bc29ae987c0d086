// Building blocks shared by the views.
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);

/** An API error as the page shows it (never a blank page). */
export function ErrorBox({ error, what }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    ${what ? html`<strong>${what}:</strong> ` : ''}${error.message || String(error)}
  </div>`;
}

export function Loading({ what }) {
  return html`<p class="muted">Loading ${what}…</p>`;
}

/** A table that scrolls sideways on a narrow screen instead of widening the page. */
export function Table({ head, children, ...rest }) {
  return html`<div class="table-wrap"><table ...${rest}>
    <thead><tr>${head.map((c) => html`<th>${c}</th>`)}</tr></thead>
    <tbody>${children}</tbody>
  </table></div>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${'badge ' + kind}>${children}</span>`;
}

export function Card({ label, value, kind, testid }) {
  return html`<div class=${'card ' + (kind || '')} data-testid=${testid}>
    <div class="card-value">${value}</div><div class="card-label">${label}</div></div>`;
}
