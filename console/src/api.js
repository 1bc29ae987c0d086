// Talking to the metadata node that served the page (same origin, so no CORS): the public API
// under /api/v1/… and the console's relays under /ui/api/…. Every failure becomes an Error
// whose message is what the server said (its JSON {"error","message"}) or why nothing came.
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Sends a request and parses the JSON answer; throws ApiError on a 4xx/5xx or no answer. */
export async function api(path, { method = 'GET', body } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(`the metadata node at ${location.host} did not answer (${e.message})`, 0, 'UNREACHABLE');
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below with the raw text.
  }
  if (!resp.ok) {
    const code = json && json.error ? json.error : `HTTP_${resp.status}`;
    const message = json && json.message ? json.message : text || resp.statusText;
    throw new ApiError(`${code}: ${message}`, resp.status, code);
  }
  return json;
}

/**
 * Polls `load` every `intervalMs` (and at once when `deps` change). Keeps the last good data
 * when a poll fails, so a view shows the error above the (stale) data instead of going blank.
 */
export function usePoll(load, intervalMs, deps = []) {
  const [state, setState] = useState({ data: null, error: null, at: 0 });
  const loadRef = useRef(load);
  loadRef.current = load;
  const seq = useRef(0);
  const refresh = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const data = await loadRef.current();
      if (mine === seq.current) setState({ data, error: null, at: Date.now() });
    } catch (error) {
      if (mine === seq.current) setState((s) => ({ ...s, error, at: Date.now() }));
    }
  }, []);
  useEffect(() => {
    setState({ data: null, error: null, at: 0 });
    let stopped = false;
    let timer = null;
    const tick = async () => {
      await refresh();
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    tick();
    return () => {
      stopped = true;
      seq.current++;
      clearTimeout(timer);
    };
  }, deps);
  return { ...state, refresh };
}

export const enc = encodeURIComponent;
