// The job builder: the job's fields, its steps (added, removed, reordered
// by drag and drop or by keyboard: the move buttons or Alt+ArrowUp/Down),
// each step's config form from its type's JSON Schema, flow on success and
// failure, retries and timeout; `${...}` variables offered where a field
// takes text; validation against POST /api/v2/jobs/validate as the user
// types, each error shown at its field; save, run now, and the job's
// schedules. Viewers see the same page read-only.

import { ApiError, can, get, post } from './api.js';
import { announce, debounce, field, h, replace, zoneList } from './dom.js';
import { schemaForm } from './schema-form.js';
import { renderSchedules } from './schedule.js';

/** Each step's identity in the page (not sent: JSON skips symbols). */
const KEY = Symbol('key');
let nextKey = 0;
const keyed = (step) => {
  if (step[KEY] === undefined) {
    nextKey += 1;
    step[KEY] = `k${nextKey}`;
  }
  return step;
};

const FLOW = [
  ['next', 'next step'],
  ['quit_success', 'end: succeeded'],
  ['quit_failure', 'end: failed'],
];

export async function renderBuilder(main, { session }, jobId) {
  const editable = can(session, 'operate');
  const readOnly = !editable;
  const [typesBody, stored] = await Promise.all([
    get('/api/v2/steps/types'),
    jobId ? get(`/api/v2/jobs/${encodeURIComponent(jobId)}`) : Promise.resolve(null),
  ]);
  const types = new Map(typesBody.step_types.map((t) => [t.name, t]));
  const job = stored?.definition ?? {
    id: '',
    name: '',
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
    steps: [],
  };
  job.steps.forEach(keyed);
  let version = stored?.version ?? null;
  let dirty = false;
  document.title = `${jobId ? `Job ${jobId}` : 'New job'} · Meridian`;

  const stepsList = h('ol', { class: 'steps', id: 'steps', 'aria-label': 'Steps' });
  const summary = h('div', { class: 'panel', id: 'validation', 'aria-live': 'polite' });
  const heading = h('h1', {}, jobId ? `Job ${jobId}` : 'New job');
  const versionNote = h('p', { class: 'muted', id: 'job-version' }, version ? `Version ${version}` : 'Not saved yet');

  // The job's own fields.
  const input = (key, attrs = {}) => h('input', {
    type: 'text',
    readOnly,
    autocomplete: 'off',
    value: job[key] ?? '',
    oninput: (e) => {
      if (e.target.value === '' && key !== 'id' && key !== 'name') delete job[key];
      else job[key] = e.target.value;
      changed();
    },
    ...attrs,
  });
  const idInput = input('id', { readOnly: readOnly || Boolean(jobId), pattern: '[A-Za-z0-9._-]{1,128}' });
  const tagsInput = h('input', {
    type: 'text',
    readOnly,
    value: (job.tags ?? []).join(', '),
    oninput: (e) => {
      const tags = e.target.value.split(',').map((t) => t.trim()).filter(Boolean);
      if (tags.length) job.tags = tags;
      else delete job.tags;
      changed();
    },
  });
  const jobFields = h('section', { class: 'panel', 'aria-labelledby': 'job-h' },
    h('h2', { id: 'job-h' }, 'Job'),
    h('div', { class: 'grid' },
      field('Job id', idInput, { path: 'id', required: true, hint: jobId ? 'Saving again stores a new version.' : 'Letters, digits, - _ .' }),
      field('Name', input('name'), { path: 'name', required: true }),
      field('Time zone', input('timezone', { list: zoneList() }), { path: 'timezone', hint: 'Runs queue in this zone.' }),
      field('Tags', tagsInput, { path: 'tags', hint: 'Comma-separated.' }),
      field('Owner', input('owner'), { path: 'owner' })),
    field('Description', h('textarea', {
      rows: 2,
      readOnly,
      oninput: (e) => {
        if (e.target.value) job.description = e.target.value;
        else delete job.description;
        changed();
      },
    }, job.description ?? ''), { path: 'description' }));

  // Adding a step.
  const typeSelect = h('select', {}, [...types.keys()].sort().map((t) => h('option', { value: t }, t)));
  const addBar = editable
    ? h('div', { class: 'toolbar' },
      field('Step type', typeSelect),
      h('button', { type: 'button', id: 'add-step', onclick: () => addStep(typeSelect.value) }, 'Add step'))
    : null;

  const saveBtn = editable ? h('button', { type: 'button', id: 'save', onclick: () => save() }, 'Save') : null;
  const runBtn = editable ? h('button', { type: 'button', id: 'run', class: 'secondary', onclick: () => run() }, 'Run now') : null;
  const json = h('pre', { class: 'log', id: 'job-json' });
  const schedules = h('section', { class: 'panel', id: 'schedules', 'aria-labelledby': 'sched-h' });

  replace(
    main,
    heading,
    versionNote,
    readOnly ? h('p', { class: 'panel', id: 'read-only-note' }, 'Read only: your role (', session.role, ') may look but not change or run jobs.') : null,
    jobFields,
    h('section', { 'aria-labelledby': 'steps-h' },
      h('h2', { id: 'steps-h' }, 'Steps'),
      editable ? h('p', { class: 'muted', id: 'reorder-help' }, 'Reorder by dragging a step by its handle, with the move buttons, or with Alt+Arrow Up/Down inside a step.') : null,
      stepsList,
      addBar),
    summary,
    editable ? h('div', { class: 'row' }, saveBtn, runBtn) : null,
    h('details', {}, h('summary', {}, 'Definition (JSON)'), json),
    schedules,
  );

  // Variables a step may use: params, earlier steps' outputs and exports.
  function variables(index) {
    const out = ['${job.id}', '${execution.id}'];
    for (const p of Object.keys(job.params ?? {})) out.push(`\${params.${p}}`);
    for (const s of job.steps.slice(0, index)) {
      if (!s.id) continue;
      out.push(`\${steps.${s.id}.output}`);
      for (const name of Object.keys(s.config?.extract ?? {})) out.push(`\${steps.${s.id}.exports.${name}}`);
    }
    return out;
  }

  function flowSelect(step, key, index, label) {
    const sel = h('select', {
      disabled: readOnly,
      'data-flow': key,
      onchange: (e) => {
        const v = e.target.value;
        if (v === '') delete step[key];
        else step[key] = v.startsWith('goto:') ? { goto: v.slice(5) } : v;
        changed();
      },
    });
    fillFlow(sel, step, key);
    return field(label, sel, { path: `steps[${index}].${key}` });
  }

  function fillFlow(sel, step, key) {
    const current = step[key];
    const value = current === undefined ? '' : typeof current === 'object' ? `goto:${current.goto}` : current;
    replace(sel,
      h('option', { value: '' }, key === 'on_success' ? '(default: next step)' : '(default: end: failed)'),
      FLOW.map(([v, text]) => h('option', { value: v }, text)),
      job.steps.filter((s) => s !== step && s.id).map((s) => h('option', { value: `goto:${s.id}` }, `go to ${s.id}`)));
    sel.value = value;
  }

  function numberField(label, value, path, onValue, hint) {
    const el = h('input', {
      type: 'number',
      min: '0',
      readOnly,
      value: value ?? '',
      oninput: (e) => {
        onValue(e.target.value === '' ? undefined : Number(e.target.value));
        changed();
      },
    });
    return field(label, el, { path, hint });
  }

  function stepCard(step, index) {
    const type = types.get(step.type);
    const key = step[KEY];
    const listId = `vars-${key}`;
    const idField = h('input', {
      type: 'text',
      readOnly,
      value: step.id,
      autocomplete: 'off',
      'data-role': 'step-id',
      oninput: (e) => {
        step.id = e.target.value;
        changed();
      },
    });
    const move = (delta, role) => h('button', {
      type: 'button',
      class: 'icon',
      'data-role': role,
      'aria-label': `Move step ${step.id || index + 1} ${delta < 0 ? 'up' : 'down'}`,
      disabled: (delta < 0 && index === 0) || (delta > 0 && index === job.steps.length - 1),
      onclick: () => moveStep(index, index + delta, role),
    }, delta < 0 ? '↑' : '↓');
    const retry = step.retry ?? {};
    const setRetry = (k, v) => {
      const r = { ...(step.retry ?? {}) };
      if (v === undefined) delete r[k];
      else r[k] = v;
      if (Object.keys(r).length) step.retry = r;
      else delete step.retry;
    };
    const card = h('li', {
      class: 'step',
      'data-key': key,
      'data-path': `steps[${index}]`,
      'aria-labelledby': `${key}-title`,
      tabindex: '-1',
      onkeydown: (e) => {
        if (!editable || !e.altKey || (e.key !== 'ArrowUp' && e.key !== 'ArrowDown')) return;
        e.preventDefault();
        const role = document.activeElement?.dataset?.role ?? null;
        moveStep(index, index + (e.key === 'ArrowUp' ? -1 : 1), role);
      },
      ondragover: (e) => {
        if (!dragging) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'move';
        card.classList.add('drop-target');
      },
      ondragleave: () => card.classList.remove('drop-target'),
      ondrop: (e) => {
        e.preventDefault();
        card.classList.remove('drop-target');
        if (dragging === null) return;
        const from = job.steps.findIndex((s) => s[KEY] === dragging);
        dragging = null;
        if (from !== -1) moveStep(from, index, 'handle');
      },
    },
    h('div', { class: 'step-head' },
      editable ? h('span', {
        class: 'handle',
        draggable: 'true',
        'data-role': 'handle',
        title: 'Drag to reorder',
        'aria-hidden': 'true',
        ondragstart: (e) => {
          dragging = key;
          e.dataTransfer.effectAllowed = 'move';
          e.dataTransfer.setData('text/plain', step.id || key);
          e.dataTransfer.setDragImage(card, 10, 10);
          card.classList.add('dragging');
        },
        ondragend: () => {
          dragging = null;
          card.classList.remove('dragging');
        },
      }, '⠿') : null,
      h('h3', { id: `${key}-title` }, h('span', { class: 'step-no' }, `${index + 1}. `), h('span', { class: 'step-name' }, step.id || '(no id)'), ' ', h('span', { class: 'muted' }, `(${step.type})`)),
      editable ? h('div', { class: 'step-actions' },
        move(-1, 'move-up'),
        move(1, 'move-down'),
        h('button', {
          type: 'button',
          class: 'danger',
          'data-role': 'remove',
          'aria-label': `Remove step ${step.id || index + 1}`,
          onclick: () => removeStep(index),
        }, 'Remove')) : null),
    h('datalist', { id: listId }, variables(index).map((v) => h('option', { value: v }))),
    h('div', { class: 'grid' },
      field('Step id', idField, { path: `steps[${index}].id`, required: true }),
      type ? null : h('p', { class: 'field-error' }, `Unknown step type ${step.type}`)),
    type
      ? schemaForm({ schema: type.config_schema, config: (step.config ??= {}), path: `steps[${index}].config`, onChange: changed, readOnly, varsList: listId })
      : null,
    h('details', { open: step.retry || step.timeout_ms || step.on_success || step.on_failure ? true : null },
      h('summary', {}, 'Flow, retries and timeout'),
      h('div', { class: 'grid' },
        flowSelect(step, 'on_success', index, 'On success'),
        flowSelect(step, 'on_failure', index, 'On failure'),
        numberField('Attempts', retry.max_attempts, `steps[${index}].retry.max_attempts`, (v) => setRetry('max_attempts', v), '1 = no retry.'),
        numberField('First retry after (ms)', retry.initial_interval_ms, `steps[${index}].retry.initial_interval_ms`, (v) => setRetry('initial_interval_ms', v)),
        numberField('Timeout (ms)', step.timeout_ms, `steps[${index}].timeout_ms`, (v) => {
          if (v === undefined) delete step.timeout_ms;
          else step.timeout_ms = v;
        }))));
    return card;
  }

  let dragging = null;

  function drawSteps(focus) {
    replace(stepsList, job.steps.map(stepCard));
    if (!job.steps.length) stepsList.append(h('li', { class: 'muted' }, 'No steps yet.'));
    if (focus) {
      const card = stepsList.querySelector(`[data-key="${focus.key}"]`);
      const target = (focus.role && card?.querySelector(`[data-role="${focus.role}"]:not(:disabled)`)) || card;
      target?.focus();
    }
  }

  function moveStep(from, to, role) {
    if (to < 0 || to >= job.steps.length || from === to) return;
    const [step] = job.steps.splice(from, 1);
    job.steps.splice(to, 0, step);
    drawSteps({ key: step[KEY], role: role === 'handle' ? null : role });
    announce(`Moved step ${step.id} to position ${to + 1} of ${job.steps.length}.`);
    changed();
  }

  function removeStep(index) {
    const [step] = job.steps.splice(index, 1);
    const next = job.steps[Math.min(index, job.steps.length - 1)];
    drawSteps(next ? { key: next[KEY], role: 'remove' } : null);
    if (!next) typeSelect.focus();
    announce(`Removed step ${step.id}.`);
    changed();
  }

  function addStep(typeName) {
    const used = new Set(job.steps.map((s) => s.id));
    let n = job.steps.length + 1;
    while (used.has(`${typeName}-${n}`)) n += 1;
    const step = keyed({ id: `${typeName}-${n}`, type: typeName, config: {} });
    job.steps.push(step);
    drawSteps({ key: step[KEY], role: 'step-id' });
    announce(`Added step ${step.id} (${typeName}).`);
    changed();
  }

  // Titles, datalists and goto options follow the steps' ids.
  function refreshDerived() {
    job.steps.forEach((step, index) => {
      const card = stepsList.querySelector(`[data-key="${step[KEY]}"]`);
      if (!card) return;
      card.querySelector('.step-name').textContent = step.id || '(no id)';
      replace(card.querySelector('datalist'), variables(index).map((v) => h('option', { value: v })));
      for (const sel of card.querySelectorAll('select[data-flow]')) fillFlow(sel, step, sel.dataset.flow);
    });
    json.textContent = JSON.stringify(job, null, 2);
  }

  const validate = debounce(async () => {
    try {
      const result = await post('/api/v2/jobs/validate', job);
      showErrors(result.valid ? [] : result.errors);
    } catch (e) {
      showErrors(e instanceof ApiError && e.errors.length ? e.errors : [{ path: '', message: e.message }]);
    }
  }, 400);

  function changed() {
    dirty = true;
    refreshDerived();
    validate();
  }

  /** The element an error belongs to: its field, or the nearest container. */
  function target(path) {
    let p = path;
    while (p) {
      const el = main.querySelector(`[data-path="${CSS.escape(p)}"]`);
      if (el) return el;
      const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
      p = cut > 0 ? p.slice(0, cut) : '';
    }
    return null;
  }

  function showErrors(errors) {
    for (const el of main.querySelectorAll('[data-path] .field-error')) {
      if (el.classList.contains('local')) continue;
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of main.querySelectorAll('.container-error')) el.remove();
    for (const el of main.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
    const items = errors.map((err) => {
      const el = target(err.path);
      let focusable = null;
      if (el?.classList.contains('field')) {
        const msg = el.querySelector('.field-error');
        msg.textContent = msg.textContent ? `${msg.textContent} ${err.message}` : err.message;
        msg.hidden = false;
        focusable = el.querySelector('input, select, textarea');
        focusable?.setAttribute('aria-invalid', 'true');
      } else if (el) {
        el.prepend(h('p', { class: 'field-error container-error', 'data-error-path': err.path }, err.message));
        focusable = el;
      }
      for (let d = el?.closest('details'); d; d = d.parentElement?.closest('details')) d.open = true;
      return h('li', {}, h('code', {}, err.path || '(job)'), ': ', err.message,
        focusable ? [' ', h('button', { type: 'button', class: 'icon', onclick: () => focusable.focus() }, 'Go to field')] : null);
    });
    if (errors.length) {
      replace(summary, h('div', { class: 'errors-summary' },
        h('h2', {}, `${errors.length} problem${errors.length === 1 ? '' : 's'}`), h('ul', {}, items)));
    } else {
      replace(summary, h('p', { class: 'valid', id: 'valid' }, '✓ The job is valid.'));
    }
    if (saveBtn) saveBtn.disabled = false;
  }

  async function save() {
    try {
      const res = await post('/api/v2/jobs', job);
      version = res.version;
      dirty = false;
      versionNote.textContent = `Version ${version} saved`;
      announce(`Saved ${res.id}, version ${res.version}.`, 'ok');
      if (!jobId) {
        jobId = res.id;
        idInput.readOnly = true;
        heading.textContent = `Job ${jobId}`;
        document.title = `Job ${jobId} · Meridian`;
        history.replaceState(null, '', `#/jobs/${encodeURIComponent(jobId)}`);
        schedules.hidden = false;
        renderSchedules(schedules, { job, session });
      }
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.errors.length) showErrors(e.errors);
      announce(`Not saved: ${e.message}`, 'error');
      return false;
    }
  }

  async function run() {
    if ((dirty || version === null) && !(await save())) return;
    try {
      const res = await post('/api/v2/jobs/execute', { job_id: jobId });
      announce(`Started execution ${res.execution_id}.`, 'ok');
      location.hash = `#/executions/${res.execution_id}`;
    } catch (e) {
      announce(`Not started: ${e.message}`, 'error');
    }
  }

  drawSteps(null);
  refreshDerived();
  if (jobId) {
    renderSchedules(schedules, { job, session });
    validate();
  } else {
    schedules.hidden = true;
    replace(summary, h('p', { class: 'muted' }, 'Add steps; problems show up here and at their fields as you type.'));
    idInput.focus();
  }
  return null;
}
