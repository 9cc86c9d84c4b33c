// The jobs list: every stored job with its latest run's status, searchable
// by id, name, tag or owner and filtered by that status.

import { can, get, qs } from './api.js';
import { announce, badge, field, h, replace, time, STATUSES } from './dom.js';

export async function renderJobs(main, { session }) {
  document.title = 'Jobs · Meridian';
  const search = h('input', { type: 'search', placeholder: 'id, name, tag, owner' });
  const status = h('select', {}, h('option', { value: '' }, 'any'), h('option', { value: 'never' }, 'never run'),
    STATUSES.map((s) => h('option', { value: s }, s)));
  const tbody = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  replace(
    main,
    h('div', { class: 'row' }, h('h1', {}, 'Jobs'),
      can(session, 'operate') ? h('a', { href: '#/jobs/new', class: 'button-link', id: 'new-job' }, 'New job') : null),
    h('div', { class: 'toolbar', role: 'search' },
      field('Search', search),
      field('Last run', status)),
    count,
    h('div', { class: 'table-wrap' },
      h('table', {},
        h('caption', { class: 'sr-only' }, 'Jobs and their latest runs'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Job'),
          h('th', { scope: 'col' }, 'Last run'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Zone'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Steps'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Version'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Tags'))),
        tbody)),
  );

  let jobs = [];
  let last = new Map();
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const want = status.value;
    const rows = jobs.filter((j) => {
      const text = [j.id, j.name, j.owner ?? '', ...(j.tags ?? [])].join(' ').toLowerCase();
      const s = last.get(j.id)?.status ?? 'never';
      return (!q || text.includes(q)) && (!want || s === want);
    });
    replace(tbody, rows.map((j) => {
      const run = last.get(j.id);
      return h('tr', {},
        h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name || j.id), h('div', { class: 'muted mono' }, j.id)),
        h('td', {}, run ? [h('a', { href: `#/executions/${run.id}` }, badge(run.status)), ' ', time(run.queued_at)] : h('span', { class: 'muted' }, 'never run')),
        h('td', { class: 'hide-narrow' }, j.timezone),
        h('td', { class: 'hide-narrow' }, String(j.step_count)),
        h('td', { class: 'hide-narrow' }, String(j.version)),
        h('td', { class: 'hide-narrow' }, (j.tags ?? []).join(', ')));
    }));
    count.textContent = `${rows.length} of ${jobs.length} jobs`;
  };
  search.addEventListener('input', draw);
  status.addEventListener('change', draw);

  try {
    let after = null;
    do {
      const page = await get(`/api/v2/jobs${qs({ limit: 500, after })}`);
      jobs = jobs.concat(page.jobs);
      after = page.next_after;
    } while (after && jobs.length < 5000);
    // The latest run of each job, from the most recent executions.
    const recent = await get('/api/v2/executions?limit=500');
    last = new Map();
    for (const e of recent.executions) if (!last.has(e.job_id)) last.set(e.job_id, e);
  } catch (e) {
    announce(`Loading the jobs failed: ${e.message}`, 'error');
  }
  draw();
  return null;
}
