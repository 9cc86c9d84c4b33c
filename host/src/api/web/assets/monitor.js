// The execution monitor: the history (filtered by job, status and
// schedule) and one execution live: each step's status and attempts, the
// log tail streamed over SSE (read with fetch, so the token stays in a
// header), cancel and run again.

import { can, followLogs, get, post, qs } from './api.js';
import { announce, badge, field, h, ms, replace, time, STATUSES, TERMINAL } from './dom.js';

export async function renderExecutions(main, { session }, params) {
  document.title = 'Executions · Meridian';
  const filters = {
    job_id: params.get('job_id') ?? '',
    status: params.get('status') ?? '',
    schedule_id: params.get('schedule_id') ?? '',
  };
  const jobInput = h('input', { type: 'search', value: filters.job_id, autocomplete: 'off' });
  const schedInput = h('input', { type: 'search', value: filters.schedule_id, autocomplete: 'off' });
  const statusSelect = h('select', {}, h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s }, s)));
  statusSelect.value = filters.status;
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older executions');
  let before = null;

  async function load(reset) {
    if (reset) {
      before = null;
      tbody.replaceChildren();
    }
    try {
      const page = await get(`/api/v2/executions${qs({ ...filters, limit: 50, before })}`);
      for (const e of page.executions) {
        tbody.append(h('tr', {},
          h('td', {}, h('a', { href: `#/executions/${e.id}`, class: 'mono' }, e.id.slice(-12))),
          h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(e.job_id)}` }, e.job_id), h('span', { class: 'muted' }, ` v${e.job_version}`)),
          h('td', {}, badge(e.status)),
          h('td', { class: 'hide-narrow' }, e.timezone),
          h('td', { class: 'hide-narrow' }, e.trigger ?? ''),
          h('td', {}, time(e.queued_at)),
          h('td', { class: 'hide-narrow' }, ms(e.duration_ms))));
      }
      before = page.next_before;
      more.hidden = !before;
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: '7', class: 'muted' }, 'No executions match.')));
    } catch (e) {
      announce(`Loading the executions failed: ${e.message}`, 'error');
    }
  }
  more.addEventListener('click', () => load(false));

  const form = h('form', {
    class: 'toolbar',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      filters.job_id = jobInput.value.trim();
      filters.status = statusSelect.value;
      filters.schedule_id = schedInput.value.trim();
      history.replaceState(null, '', `#/executions${qs(filters)}`);
      load(true);
    },
  },
  field('Job id', jobInput),
  field('Status', statusSelect),
  field('Schedule id', schedInput),
  h('button', { type: 'submit' }, 'Filter'));

  replace(main,
    h('h1', {}, 'Executions'),
    form,
    h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'sr-only' }, 'Executions, newest first'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Execution'),
        h('th', { scope: 'col' }, 'Job'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'Zone'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'Trigger'),
        h('th', { scope: 'col' }, 'Queued'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'Duration'))),
      tbody)),
    more);
  await load(true);
  // Running executions change: refresh the first page every few seconds.
  const timer = setInterval(() => {
    if (!before || tbody.children.length <= 50) load(true);
  }, 5000);
  return () => clearInterval(timer);
}

export async function renderExecution(main, { session }, id) {
  document.title = `Execution ${id.slice(-12)} · Meridian`;
  const operate = can(session, 'operate');
  const head = h('div');
  const steps = h('div', { id: 'step-runs' });
  const log = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': 'Log', 'aria-live': 'off' });
  const logState = h('p', { class: 'muted', id: 'log-state' }, 'Connecting to the log…');
  const abort = new AbortController();
  let timer = null;
  let lastStatus = null;
  let execution = null;

  const cancelBtn = operate ? h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: cancel }, 'Cancel') : null;
  const againBtn = operate ? h('button', { type: 'button', class: 'secondary', id: 'run-again', onclick: runAgain }, 'Run again') : null;

  replace(main,
    h('h1', {}, 'Execution ', h('span', { class: 'mono' }, id)),
    head,
    operate ? h('div', { class: 'row' }, cancelBtn, againBtn) : null,
    h('h2', {}, 'Steps'),
    steps,
    h('h2', {}, 'Log'),
    logState,
    log);

  async function cancel() {
    try {
      await post(`/api/v2/executions/${encodeURIComponent(id)}/cancel`);
      announce('Cancel requested.', 'ok');
      poll();
    } catch (e) {
      announce(`Cancel failed: ${e.message}`, 'error');
    }
  }

  async function runAgain() {
    try {
      const res = await post('/api/v2/jobs/execute', { job_id: execution.job_id, params: execution.params ?? {} });
      location.hash = `#/executions/${res.execution_id}`;
    } catch (e) {
      announce(`Not started: ${e.message}`, 'error');
    }
  }

  function draw(e) {
    execution = e;
    replace(head, h('div', { class: 'panel' }, h('dl', { class: 'grid' },
      [['Status', h('span', { id: 'execution-status' }, badge(e.status))],
        ['Job', h('a', { href: `#/jobs/${encodeURIComponent(e.job_id)}` }, `${e.job_id} v${e.job_version}`)],
        ['Zone', e.timezone],
        ['Trigger', e.trigger ?? '—'],
        ['Queued', time(e.queued_at)],
        ['Started', time(e.started_at)],
        ['Finished', time(e.finished_at)],
        ['Duration', ms(e.duration_ms)]]
        .map(([k, v]) => h('div', {}, h('dt', { class: 'muted' }, k), h('dd', {}, v)))),
    e.error ? h('p', { class: 'field-error', id: 'execution-error' }, e.error.message) : null));
    replace(steps, h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'sr-only' }, 'Step runs'),
      h('thead', {}, h('tr', {}, ['#', 'Step', 'Status', 'Attempts', 'Duration', 'Result'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, (e.steps ?? []).map((s) => h('tr', { 'data-step': s.step_id },
        h('td', {}, String(s.seq)),
        h('td', {}, s.step_id, h('span', { class: 'muted' }, ` (${s.step_type})`)),
        h('td', {}, badge(s.status)),
        h('td', {}, String(s.attempt_count ?? s.attempts?.length ?? 0)),
        h('td', {}, ms(s.duration_ms)),
        h('td', { class: 'mono' }, s.error ? h('span', { class: 'field-error' }, s.error.message) : s.output === null || s.output === undefined ? '' : JSON.stringify(s.output).slice(0, 200))))))));
    if (cancelBtn) cancelBtn.disabled = TERMINAL.has(e.status) || e.cancel_requested;
    if (e.status !== lastStatus) {
      // Said on arrival too: a quick run may have ended before the page.
      announce(`Execution ${e.status}.`, e.status === 'succeeded' ? 'ok' : e.status === 'failed' ? 'error' : 'info');
      lastStatus = e.status;
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const e = await get(`/api/v2/executions/${encodeURIComponent(id)}`, { signal: abort.signal });
      draw(e);
      if (!TERMINAL.has(e.status)) timer = setTimeout(poll, 1000);
    } catch (e) {
      if (abort.signal.aborted) return;
      announce(`Loading the execution failed: ${e.message}`, 'error');
      timer = setTimeout(poll, 3000);
    }
  }

  function line(l) {
    const at = l.ts ? l.ts.slice(11, 23) : '';
    const step = l.fields?.step_id ? `[${l.fields.step_id}] ` : '';
    const extra = l.fields?.decision ? ` ${l.fields.capability} ${l.fields.target_resource} → ${l.fields.decision}` : '';
    const row = h('span', { class: `l-${l.level ?? 'INFO'}` }, `${at} ${(l.level ?? '').padEnd(5)} ${step}${l.message ?? ''}${extra}\n`);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.append(row);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  await poll();
  followLogs(id, {
    signal: abort.signal,
    onLine: (l) => {
      logState.textContent = 'Following the log…';
      line(l);
    },
    onEnd: () => {
      logState.textContent = 'The log is complete.';
      logState.dataset.state = 'complete';
      poll();
    },
  }).catch((e) => {
    if (!abort.signal.aborted) logState.textContent = `The log stream stopped: ${e.message}`;
  });
  return () => {
    abort.abort();
    clearTimeout(timer);
  };
}
