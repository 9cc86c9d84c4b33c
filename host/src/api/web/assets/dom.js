// Small DOM helpers shared by the pages: element building, the live
// status region, formatting, debouncing. No framework.

/**
 * Builds an element: h('button', { class: 'x', onclick: fn }, 'text', child).
 * Attributes starting with "on" become listeners; `false`, `null` and
 * `undefined` attributes are left out; children may be strings, nodes,
 * arrays or null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' && 'value' in el && !tag.startsWith('svg:')) {
      el.value = value;
    } else if (key === 'checked' || key === 'disabled' || key === 'readOnly') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Says `message` to screen readers (and shows it) through the live region. */
export function announce(message, kind = 'info') {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = message;
  region.dataset.kind = kind;
  announcedAt = Date.now();
}

let announcedAt = 0;
/** Clears a status message older than a few seconds (on a new page). */
export function clearStaleStatus() {
  const region = document.getElementById('status');
  if (region && Date.now() - announcedAt > 3000) {
    region.textContent = '';
    delete region.dataset.kind;
  }
}

/** A function that runs `fn` once calls have paused for `ms`. */
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

let ids = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix = 'f') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled control: label above, control, hint and error slot below. */
export function field(label, control, { hint, path, required } = {}) {
  if (!control.id) control.id = uid();
  const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  control.setAttribute('aria-describedby', [hintEl?.id, error.id].filter(Boolean).join(' '));
  if (required) control.setAttribute('aria-required', 'true');
  const wrap = h(
    'div',
    { class: 'field', 'data-path': path ?? null },
    h('label', { for: control.id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    control,
    hintEl,
    error,
  );
  return wrap;
}

/** A status badge (succeeded, failed, running…). */
export function badge(status) {
  return h('span', { class: `badge s-${status ?? 'none'}` }, status ?? '—');
}

/** A time as the user's locale shows it, with the ISO text as its title. */
export function time(iso) {
  if (!iso) return h('span', {}, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

/** Milliseconds as a short duration. */
export function ms(value) {
  if (value === null || value === undefined) return '—';
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  return `${Math.floor(value / 60_000)} min ${Math.round((value % 60_000) / 1000)} s`;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'];

/** The IANA zones this browser knows (for zone pickers). */
export function zones() {
  try {
    return Intl.supportedValuesOf('timeZone');
  } catch {
    return ['UTC'];
  }
}

/** A <datalist> of every zone, made once per page. */
export function zoneList() {
  let list = document.getElementById('zones');
  if (!list) {
    list = h('datalist', { id: 'zones' }, zones().map((z) => h('option', { value: z })));
    document.body.append(list);
  }
  return list.id;
}
