// The queue dashboard: a card per time zone (each zone has its own queue)
// with depth, running, oldest wait, latency and a throughput sparkline
// (inline SVG), polled from GET /api/v2/queues every 2 seconds; below, the
// nodes sharing the store (GET /api/v2/cluster): state, last heartbeat and
// the executions each holds.

import { get } from './api.js';
import { announce, h, ms, replace } from './dom.js';

const POLL_MS = 2000;
/** Samples kept per zone for the sparkline (2 minutes). */
const SAMPLES = 60;

/** An inline SVG line of `values` (newest last), scaled to its maximum. */
export function sparkline(values, label) {
  const w = 200;
  const hgt = 40;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? w / (SAMPLES - 1) : 0;
  const offset = w - step * (values.length - 1);
  const points = values.map((v, i) => `${(offset + i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(' ');
  return h('svg:svg', { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    h('svg:title', {}, label),
    h('svg:line', { x1: 0, y1: hgt - 1, x2: w, y2: hgt - 1 }),
    values.length ? h('svg:polyline', { points }) : null);
}

export async function renderQueues(main) {
  document.title = 'Queues · Meridian';
  const cards = h('div', { class: 'cards', id: 'queue-cards' });
  const updated = h('p', { class: 'muted', id: 'queues-updated' });
  const nodes = h('div', { class: 'table-wrap', id: 'cluster-nodes' });
  replace(main, h('h1', {}, 'Queues by time zone'),
    h('p', { class: 'muted' }, 'One queue per zone; runs of a job wait in its zone\'s queue. Updated every 2 s.'),
    updated, cards,
    h('h2', {}, 'Nodes'),
    h('p', { class: 'muted' }, 'The nodes sharing this store. A lost node\'s executions are taken over by the others once its lease expires.'),
    nodes);
  const history = new Map();
  let timer = null;
  let stopped = false;
  let failing = false;

  async function poll() {
    try {
      const body = await get('/api/v2/queues');
      const queues = [...body.queues].sort((a, b) => a.zone.localeCompare(b.zone));
      for (const q of queues) {
        const series = history.get(q.zone) ?? [];
        series.push(q.windows?.['1m']?.throughput_per_s * 60 || 0);
        if (series.length > SAMPLES) series.shift();
        history.set(q.zone, series);
      }
      replace(cards, queues.length ? queues.map(card) : h('p', { class: 'muted' }, 'No queue yet: a zone\'s queue starts with its first run.'));
      const cluster = await get('/api/v2/cluster');
      replace(nodes, h('table', {},
        h('caption', {}, `Store: ${cluster.store}; lease ${cluster.lease_s} s; this page is served by ${cluster.this_node}`),
        h('thead', {}, h('tr', {}, ['Node', 'State', 'Last heartbeat', 'Clock vs store', 'Holds', 'Running', 'Host', 'Version'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, cluster.nodes.map((n) => h('tr', { 'data-node': n.id },
          h('th', { scope: 'row' }, n.id),
          h('td', { class: `state-${n.state}` }, n.state),
          h('td', {}, new Date(n.last_heartbeat).toLocaleTimeString()),
          h('td', { class: Math.abs(n.clock_offset_ms ?? 0) > 1000 ? 'state-lost' : '' }, clockOffset(n.clock_offset_ms)),
          h('td', {}, String(n.held)),
          h('td', {}, String(n.running)),
          h('td', {}, `${n.hostname} (pid ${n.pid})`),
          h('td', {}, n.version))))));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      if (failing) announce('The dashboard is updating again.', 'ok');
      failing = false;
    } catch (e) {
      if (!failing) announce(`Updating the dashboard failed: ${e.message}`, 'error');
      failing = true;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  // How far a node's clock is from the store's, as it measured it: behind
  // is positive (the node adds it), ahead negative.
  function clockOffset(ms) {
    if (ms === null || ms === undefined) return '—';
    const rounded = Math.round(ms);
    if (Math.abs(rounded) < 1) return 'in step';
    return rounded > 0 ? `${rounded} ms behind` : `${-rounded} ms ahead`;
  }

  function card(q) {
    const series = history.get(q.zone) ?? [];
    const w1 = q.windows?.['1m'];
    let local = '';
    try {
      local = new Date().toLocaleTimeString([], { timeZone: q.zone, hour: '2-digit', minute: '2-digit' });
    } catch {
      local = '';
    }
    const stats = [
      ['Waiting', String(q.depth)],
      ['Running', `${q.running} of ${q.workers} workers`],
      ['Oldest wait', ms(q.oldest_wait_ms)],
      ['Wait p50 / p99', `${ms(q.wait_p50_ms)} / ${ms(q.wait_p99_ms)}`],
      ['Run p50 (1 min)', ms(w1?.run_ms?.p50)],
      ['Done', `${q.succeeded} ok, ${q.failed} failed, ${q.cancelled} cancelled`],
      ['Throughput', `${q.throughput_per_min}/min`],
    ];
    return h('section', { class: 'panel card', 'data-zone': q.zone, 'aria-label': `Queue ${q.zone}` },
      h('h2', {}, q.zone, local ? h('span', { class: 'muted' }, ` · ${local}`) : null),
      h('dl', {}, stats.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      sparkline(series, `Throughput in ${q.zone}, runs per minute over the last ${series.length * 2} s: latest ${series.at(-1)?.toFixed(1) ?? 0}`));
  }

  await poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
