// The REST API client: every call sends the signed-in token as
// `Authorization: Bearer`; the token lives in sessionStorage only (gone when
// the tab closes or on sign-out) and never in a URL.

const KEY = 'meridian.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  session = null;
}

/** An API answer that was not 2xx: the problem document's fields. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
    this.errors = problem?.errors ?? [];
  }
}

/** Called when the API says the token is not (or no longer) valid. */
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/**
 * One API call; resolves to the parsed JSON body (or null), rejects with an
 * ApiError for a non-2xx answer.
 */
export async function api(method, path, body, { signal, tokenOverride } = {}) {
  const headers = { Accept: 'application/json' };
  const t = tokenOverride ?? token();
  if (t) headers.Authorization = `Bearer ${t}`;
  // Bytes (a plugin's component) go as they are, anything else as JSON.
  const bytes = body instanceof ArrayBuffer;
  if (body !== undefined) headers['Content-Type'] = bytes ? 'application/wasm' : 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined || bytes ? body : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !tokenOverride) onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);

/** Query string from an object, leaving out empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The signed-in token's name, role and permissions (cached). */
let session = null;
export async function currentSession({ tokenOverride } = {}) {
  if (tokenOverride) return get('/api/v2/session', { tokenOverride });
  if (!session) session = await get('/api/v2/session');
  return session;
}

/** Whether the session may do `permission` (read, operate, audit, admin). */
export function can(s, permission) {
  return Boolean(s?.permissions?.includes(permission));
}

/**
 * Follows an execution's log: GET …/logs?follow=true read with fetch (an
 * EventSource cannot send the Authorization header) and the server-sent
 * events parsed from the body stream. Calls `onLine(json)` per log line and
 * `onEnd()` after `event: end`; stops when `signal` aborts.
 */
export async function followLogs(id, { onLine, onEnd, signal }) {
  const res = await fetch(`/api/v2/executions/${encodeURIComponent(id)}/logs?follow=true`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' },
    signal,
    cache: 'no-store',
  });
  if (!res.ok || !res.body) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // axum ends lines with \n; a lone \r from another server is one too.
    buffer += value.replace(/\r\n?/g, '\n');
    let cut;
    // Events end with a blank line.
    while ((cut = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = parseEvent(block);
      if (event.name === 'end') {
        onEnd?.();
        return;
      }
      if (event.name === 'line' && event.data) {
        try {
          onLine(JSON.parse(event.data));
        } catch {
          onLine({ message: event.data });
        }
      }
    }
  }
  onEnd?.();
}

function parseEvent(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i === -1 ? line : line.slice(0, i);
    const value = i === -1 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  return { name, data: data.join('\n') };
}
