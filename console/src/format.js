// Small formatting helpers shared by the views.

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function num(n) {
  if (n === null || n === undefined) return '–';
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n);
}

export function ago(ms) {
  if (!ms) return '–';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 1) return 'just now';
  if (s < 90) return `${s.toFixed(0)} s ago`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

export function time(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

export function list(xs) {
  return Array.isArray(xs) && xs.length ? xs.join(', ') : '–';
}
