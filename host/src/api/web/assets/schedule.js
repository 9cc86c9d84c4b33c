// A job's schedules: the list (pause, resume, trigger, delete) and the
// editor: cron expression, zone picker (every IANA zone the browser knows),
// misfire and overlap policy, and the next fires previewed by
// GET /api/v2/schedules/preview with their offsets and DST flags.

import { ApiError, can, get, post, api, qs } from './api.js';
import { announce, debounce, field, h, replace, time, zoneList, zones } from './dom.js';

const OVERLAP = [
  ['skip', 'skip the new fire'],
  ['allow', 'run alongside'],
  ['buffer_one', 'queue one'],
  ['buffer_all', 'queue all'],
  ['cancel_other', 'cancel the running one'],
];
const MISFIRE = [
  ['latest', 'run the latest missed fire'],
  ['all', 'run every missed fire'],
  ['none', 'run none'],
];

/** Whether `cron` looks complete enough to ask the server about. */
const plausible = (cron) => /^@\w+$/.test(cron.trim()) || [5, 6].includes(cron.trim().split(/\s+/).length);

export async function renderSchedules(section, { job, session }) {
  const editable = can(session, 'operate');
  const list = h('div', { id: 'schedule-list' });
  replace(section, h('h2', { id: 'sched-h' }, 'Schedules'), list);

  async function drawList() {
    let body;
    try {
      body = await get(`/api/v2/schedules${qs({ job_id: job.id, limit: 100 })}`);
    } catch (e) {
      replace(list, h('p', { class: 'field-error' }, `Loading the schedules failed: ${e.message}`));
      return;
    }
    if (!body.schedules.length) {
      replace(list, h('p', { class: 'muted' }, 'No schedule: the job runs only when started.'));
      return;
    }
    const act = (label, path, method = 'POST') => h('button', {
      type: 'button',
      class: method === 'DELETE' ? 'danger' : 'secondary',
      onclick: async () => {
        try {
          await api(method, path, method === 'DELETE' ? undefined : {});
          announce(`${label}: done.`, 'ok');
        } catch (e) {
          announce(`${label} failed: ${e.message}`, 'error');
        }
        drawList();
      },
    }, label);
    replace(list, h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'sr-only' }, 'Schedules of this job'),
      h('thead', {}, h('tr', {}, ['Schedule', 'Cron', 'Zone', 'State', 'Next fire', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, body.schedules.map((s) => {
        const base = `/api/v2/schedules/${encodeURIComponent(s.id)}`;
        return h('tr', {},
          h('td', { class: 'mono' }, s.id),
          h('td', { class: 'mono' }, s.cron),
          h('td', {}, s.timezone),
          h('td', {}, s.enabled ? 'active' : 'paused'),
          h('td', {}, s.next_fires?.[0] ? time(s.next_fires[0].at ?? s.next_fires[0].utc) : '—'),
          h('td', {}, editable ? h('div', { class: 'row' },
            s.enabled ? act('Pause', `${base}/pause`) : act('Resume', `${base}/resume`),
            act('Trigger now', `${base}/trigger`),
            act('Delete', base, 'DELETE')) : null));
      })))));
  }
  await drawList();
  if (!editable) return;

  // The editor.
  const spec = {
    id: `${job.id}-schedule`,
    job_id: job.id,
    cron: '0 9 * * 1-5',
    timezone: job.timezone || 'UTC',
    misfire: { policy: 'latest', window_s: 3600 },
    overlap: 'skip',
  };
  const known = new Set(zones());
  const preview = h('div', { id: 'schedule-preview', 'aria-live': 'polite' });
  const input = (key, attrs = {}) => h('input', {
    type: 'text',
    autocomplete: 'off',
    value: spec[key],
    oninput: (e) => {
      spec[key] = e.target.value;
      refresh();
    },
    ...attrs,
  });
  const select = (options, value, onValue) => {
    const el = h('select', { onchange: (e) => { onValue(e.target.value); refresh(); } },
      options.map(([v, text]) => h('option', { value: v }, `${v}: ${text}`)));
    el.value = value;
    return el;
  };
  const form = h('form', {
    class: 'schedule-form',
    'aria-labelledby': 'sched-new-h',
    onsubmit: async (e) => {
      e.preventDefault();
      clearErrors();
      try {
        const s = await post('/api/v2/schedules', spec);
        announce(`Schedule ${s.id} created.`, 'ok');
        drawList();
      } catch (x) {
        if (x instanceof ApiError) showErrors(x.errors.length ? x.errors : [{ path: '', message: x.message }]);
        announce(`Schedule not created: ${x.message}`, 'error');
      }
    },
  },
  h('h3', { id: 'sched-new-h' }, 'New schedule'),
  h('div', { class: 'grid' },
    field('Schedule id', input('id'), { path: 'id', required: true }),
    field('Cron expression', input('cron', { spellcheck: 'false', id: 'cron' }), { path: 'cron', required: true, hint: '5 or 6 fields (minute first), or @daily, @hourly…' }),
    field('Time zone', input('timezone', { list: zoneList(), id: 'schedule-zone' }), { path: 'timezone', required: true, hint: 'The wall clock the expression reads.' }),
    field('Misfire policy', select(MISFIRE, spec.misfire.policy, (v) => { spec.misfire.policy = v; }), { path: 'misfire.policy', hint: 'Fires missed while Meridian was down.' }),
    field('Catch-up window (s)', h('input', {
      type: 'number',
      min: '0',
      value: spec.misfire.window_s,
      oninput: (e) => {
        spec.misfire.window_s = Number(e.target.value);
        refresh();
      },
    }), { path: 'misfire.window_s' }),
    field('When a run is still going', select(OVERLAP, spec.overlap, (v) => { spec.overlap = v; }), { path: 'overlap' })),
  h('button', { type: 'submit', id: 'create-schedule' }, 'Create schedule'),
  h('h3', {}, 'Next fires'),
  preview);
  section.append(form);

  function clearErrors() {
    for (const el of form.querySelectorAll('.field-error')) {
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }
  function showErrors(errors) {
    for (const err of errors) {
      // Preview parameters are named tz; the schedule's field is timezone.
      const path = err.path === 'tz' ? 'timezone' : err.path;
      const f = form.querySelector(`[data-path="${CSS.escape(path)}"]`) ?? form.querySelector('[data-path="cron"]');
      const msg = f.querySelector('.field-error');
      msg.textContent = err.path && f.dataset.path !== path ? `${err.path}: ${err.message}` : err.message;
      msg.hidden = false;
      f.querySelector('input, select')?.setAttribute('aria-invalid', 'true');
    }
  }

  const refresh = debounce(async () => {
    clearErrors();
    if (!plausible(spec.cron)) {
      showErrors([{ path: 'cron', message: 'needs 5 or 6 fields, or a macro such as @daily' }]);
      return;
    }
    if (!known.has(spec.timezone) && spec.timezone !== 'UTC') {
      showErrors([{ path: 'timezone', message: 'pick an IANA zone from the list' }]);
      return;
    }
    try {
      const p = await get(`/api/v2/schedules/preview${qs({ cron: spec.cron, tz: spec.timezone, count: 6 })}`);
      replace(preview, h('div', { class: 'table-wrap' }, h('table', {},
        h('caption', { class: 'sr-only' }, `Next fires of ${p.expression} in ${p.zone}`),
        h('thead', {}, h('tr', {}, ['Local time', 'UTC', 'Offset', 'DST', 'Note'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, p.fires.map((f) => h('tr', {},
          h('td', { class: 'mono' }, f.nominal.replace('T', ' ')),
          h('td', { class: 'mono' }, f.utc),
          h('td', {}, `${f.offset} ${f.abbreviation ?? ''}`),
          h('td', {}, f.dst ? h('span', { class: 'badge s-queued' }, 'DST') : 'no'),
          h('td', {}, f.flag ? h('span', { class: 'badge s-failed' }, f.flag) : '')))))),
      p.dropped?.length ? h('p', { class: 'muted' }, `Dropped by the DST rules: ${p.dropped.map((d) => d.nominal ?? JSON.stringify(d)).join(', ')}`) : null);
    } catch (e) {
      if (e instanceof ApiError) showErrors(e.errors.length ? e.errors : [{ path: 'cron', message: e.message }]);
    }
  }, 300);
  refresh();
}
