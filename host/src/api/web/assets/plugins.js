// Plugins and security: each plugin's asked vs granted vs used
// capabilities (the last two for auditors and admins), uploading and
// removing plugins (admins), the grants (listed for auditors, created and
// revoked by admins) and the audit trail's search and verification
// (auditors and admins).

import { ApiError, api, can, get, post, qs } from './api.js';
import { announce, badge, field, h, replace, time } from './dom.js';

/** Where a plugin came from: `{kind: "built_in"}`, `{kind: "file", path}`… */
const sourceText = (s) => (typeof s === 'object' && s !== null
  ? [String(s.kind ?? '').replace('_', '-'), s.path ?? s.file ?? ''].filter(Boolean).join(' ')
  : String(s ?? ''));

const target = (c) => `${c.kind} ${c.target ?? ''}`.trim();

function rules(grant) {
  const out = [];
  for (const r of grant.http ?? []) out.push(`http ${(r.methods ?? ['*']).join(',')} ${(r.scheme ?? ['https']).join('|')}://${r.host}${r.port ? `:${r.port.join('|')}` : ''}${r.path_prefix ?? ''}${r.allow_private ? ' (private ok)' : ''}`);
  for (const r of grant.sql ?? []) out.push(`sql ${r.connection} (${r.access})`);
  for (const r of grant.process ?? []) out.push(`process ${r.program ?? JSON.stringify(r)}`);
  for (const s of grant.secrets ?? []) out.push(`secret ${s}`);
  return out;
}

/** Hex SHA-256 of bytes, or null where the browser has no Web Crypto. */
async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) return null;
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The admins' form that installs or replaces a plugin from a .wasm file. */
function uploadPanel(onDone) {
  const file = h('input', { type: 'file', accept: '.wasm,application/wasm' });
  const name = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const fileField = field('Component (.wasm)', file, { hint: 'A wasm32-wasip2 component built with the Meridian SDK.', required: true });
  const nameField = field('Plugin name', name, { hint: 'What its describe gives: a-z, 0-9, - and _, from a letter. Uploading a name in use replaces that plugin.', required: true });
  const fileError = fileField.querySelector('.field-error');
  const nameError = nameField.querySelector('.field-error');
  file.addEventListener('change', () => {
    const f = file.files[0];
    if (f && !name.value) name.value = f.name.replace(/\.wasm$/i, '').toLowerCase().replace(/[^a-z0-9_-]/g, '-');
  });
  const form = h('form', {
    id: 'upload-plugin',
    onsubmit: async (e) => {
      e.preventDefault();
      for (const el of [fileError, nameError]) el.hidden = true;
      const f = file.files[0];
      if (!f) {
        fileError.textContent = 'Choose a .wasm file.';
        fileError.hidden = false;
        return;
      }
      const bytes = await f.arrayBuffer();
      const digest = await sha256(bytes);
      try {
        const p = await api('PUT', `/api/v2/plugins/${encodeURIComponent(name.value.trim())}${digest ? `?sha256=${digest}` : ''}`, bytes);
        announce(`Plugin ${p.name} uploaded (${p.digest}).`, 'ok');
        await onDone();
      } catch (x) {
        // Each issue at its field: the name, or the component itself.
        const issues = x instanceof ApiError && x.errors.length ? x.errors : [{ path: 'body', message: x.message }];
        for (const i of issues) {
          const el = i.path === 'name' ? nameError : fileError;
          el.textContent = i.message;
          el.hidden = false;
        }
      }
    },
  }, h('h2', {}, 'Install or replace a plugin'), fileField, nameField, h('button', { type: 'submit' }, 'Upload'));
  return h('section', { class: 'panel', id: 'upload' }, form);
}

export async function renderPlugins(main, { session }) {
  document.title = 'Plugins · Meridian';
  const audit = can(session, 'audit');
  const admin = can(session, 'admin');
  const pluginsEl = h('div', { id: 'plugin-list' });
  const grantsEl = h('section', { class: 'panel', id: 'grants', 'aria-labelledby': 'grants-h' });
  const auditEl = h('section', { class: 'panel', id: 'audit', 'aria-labelledby': 'audit-h' });
  const again = () => renderPlugins(main, { session });
  replace(main, h('h1', {}, 'Plugins'), pluginsEl, admin ? uploadPanel(again) : null, audit ? grantsEl : null, audit ? auditEl : null);

  const { plugins } = await get('/api/v2/plugins');
  const caps = new Map();
  if (audit) {
    await Promise.all(plugins.map(async (p) => {
      try {
        caps.set(p.name, await get(`/api/v2/plugins/${encodeURIComponent(p.name)}/capabilities`));
      } catch (e) {
        announce(`Capabilities of ${p.name}: ${e.message}`, 'error');
      }
    }));
  }
  replace(pluginsEl, plugins.map((p) => {
    const c = caps.get(p.name);
    return h('section', { class: 'panel', 'data-plugin': p.name, 'aria-labelledby': `plugin-${p.name}` },
      h('h2', { id: `plugin-${p.name}` }, p.name, h('span', { class: 'muted' }, ` ${p.version ?? ''} · ${sourceText(p.source)}`)),
      admin && p.source?.kind === 'file' ? h('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Remove plugin ${p.name}`,
        onclick: async () => {
          if (!window.confirm(`Remove ${p.name}? Jobs using it fail validation from now on, and their next runs fail.`)) return;
          try {
            await api('DELETE', `/api/v2/plugins/${encodeURIComponent(p.name)}`);
            announce(`Plugin ${p.name} removed.`, 'ok');
            await again();
          } catch (x) {
            announce(`Remove failed: ${x.message}`, 'error');
          }
        },
      }, 'Remove') : null,
      p.description ? h('p', {}, p.description) : null,
      h('p', { class: 'mono muted' }, p.digest),
      h('div', { class: 'grid' },
        h('div', {}, h('h3', {}, 'Asks for'),
          h('ul', {}, (c?.asked ?? p.capabilities ?? []).map((a) => h('li', {}, h('code', {}, target(a)), a.reason ? h('div', { class: 'hint' }, a.reason) : null)))),
        audit ? h('div', {}, h('h3', {}, 'Granted'),
          c?.granted?.length
            ? h('ul', {}, c.granted.map((g) => h('li', {}, h('code', {}, g.id), ` (${g.source})`, g.applies === false ? h('span', { class: 'badge s-bad' }, 'not in force') : null,
              h('ul', {}, rules(g.grant).map((r) => h('li', { class: 'mono' }, r))))))
            : h('p', { class: 'muted' }, 'Nothing granted: every call is denied.')) : null,
        audit ? h('div', {}, h('h3', {}, 'Used'),
          c?.used?.length
            ? h('ul', {}, c.used.map((u) => h('li', {}, badge(u.decision), ' ', h('code', {}, `${u.capability} ${u.target}`), ` × ${u.calls}`)))
            : h('p', { class: 'muted' }, 'No call recorded.'),
          c ? h('p', { class: 'muted' }, `${c.denied_calls ?? 0} denied calls`) : null) : null));
  }));
  if (!audit) {
    pluginsEl.append(h('p', { class: 'muted' }, 'Granted and used capabilities are shown to auditors and admins.'));
    return null;
  }

  // Grants.
  async function drawGrants() {
    let body;
    try {
      body = await get('/api/v2/grants');
    } catch (e) {
      replace(grantsEl, h('p', { class: 'field-error' }, e.message));
      return;
    }
    const textarea = h('textarea', { rows: 6, spellcheck: 'false' },
      JSON.stringify({ plugin: 'http', http: [{ scheme: ['https'], host: 'api.example.com', methods: ['GET'], path_prefix: '/' }] }, null, 2));
    const form = admin ? h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        const err = form.querySelector('.field-error');
        err.hidden = true;
        let grant;
        try {
          grant = JSON.parse(textarea.value);
        } catch (x) {
          err.textContent = `Not JSON: ${x.message}`;
          err.hidden = false;
          return;
        }
        try {
          await post('/api/v2/grants', grant);
          announce('Grant created.', 'ok');
          drawGrants();
        } catch (x) {
          err.textContent = x instanceof ApiError && x.errors.length ? x.errors.map((i) => `${i.path}: ${i.message}`).join('; ') : x.message;
          err.hidden = false;
          textarea.setAttribute('aria-invalid', 'true');
        }
      },
    }, h('h3', {}, 'New grant'), field('Grant (JSON, as in the config\'s [[grants]])', textarea), h('button', { type: 'submit' }, 'Create grant')) : null;
    replace(grantsEl, h('h2', { id: 'grants-h' }, 'Grants'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Grant', 'Plugin', 'Rules', 'Source', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, body.grants.map((g) => h('tr', {},
          h('td', { class: 'mono' }, g.id),
          h('td', {}, g.grant.plugin, g.grant.digest ? h('div', { class: 'mono muted' }, g.grant.digest) : null),
          h('td', {}, h('ul', {}, rules(g.grant).map((r) => h('li', { class: 'mono' }, r)))),
          h('td', {}, g.source),
          h('td', {}, admin && g.source !== 'config' ? h('button', {
            type: 'button',
            class: 'danger',
            'aria-label': `Revoke grant ${g.id}`,
            onclick: async () => {
              try {
                await api('DELETE', `/api/v2/grants/${encodeURIComponent(g.id)}`);
                announce(`Grant ${g.id} revoked.`, 'ok');
              } catch (x) {
                announce(`Revoke failed: ${x.message}`, 'error');
              }
              drawGrants();
            },
          }, 'Revoke') : null)))))),
      admin ? form : h('p', { class: 'muted' }, 'Only admins change grants.'));
  }
  await drawGrants();

  // Audit search and verification.
  const q = { kind: '', plugin: '', decision: '', capability: '', job_id: '', since: '', until: '' };
  const inputs = Object.fromEntries(Object.keys(q).map((k) => [k, h('input', { type: k === 'since' || k === 'until' ? 'datetime-local' : 'text', autocomplete: 'off' })]));
  const decision = h('select', {}, ['', 'allowed', 'denied', 'failed', 'created', 'revoked', 'ok', 'rejected', 'unauthenticated', 'forbidden'].map((d) => h('option', { value: d }, d || 'any')));
  inputs.decision = decision;
  const results = h('div', { id: 'audit-results', 'aria-live': 'polite' });
  const verifyOut = h('p', { id: 'verify-result', 'aria-live': 'polite' });
  const search = async (e) => {
    e?.preventDefault();
    const params = {};
    for (const k of Object.keys(q)) {
      const v = inputs[k].value.trim();
      if (v) params[k] = k === 'since' || k === 'until' ? new Date(v).toISOString() : v;
    }
    try {
      const page = await get(`/api/v2/audit${qs({ ...params, limit: 100 })}`);
      replace(results, h('p', { class: 'muted' }, `${page.records.length} records${page.next_after ? ' (more exist: narrow the search)' : ''}`),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['#', 'When', 'Kind', 'Actor', 'Target', 'Decision', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, page.records.map((r) => h('tr', {},
            h('td', {}, String(r.seq)),
            h('td', {}, time(new Date(r.at_us / 1000).toISOString())),
            h('td', {}, r.kind, r.capability ? ` · ${r.capability}` : ''),
            h('td', { class: 'mono' }, r.actor ?? r.plugin ?? ''),
            h('td', { class: 'mono' }, r.target ?? ''),
            h('td', {}, badge(r.decision)),
            h('td', {}, r.detail ?? '', r.grant_hint ? h('div', { class: 'hint' }, r.grant_hint) : null)))))));
    } catch (x) {
      const text = x instanceof ApiError && x.errors.length ? x.errors.map((i) => `${i.path}: ${i.message}`).join('; ') : x.message;
      replace(results, h('p', { class: 'field-error' }, text));
    }
  };
  replace(auditEl, h('h2', { id: 'audit-h' }, 'Audit trail'),
    h('form', { class: 'toolbar', role: 'search', onsubmit: search },
      field('Kind', inputs.kind, { hint: 'api, capability, grant, token…' }),
      field('Plugin', inputs.plugin),
      field('Capability', inputs.capability),
      field('Decision', decision),
      field('Job id', inputs.job_id),
      field('Since', inputs.since),
      field('Until', inputs.until),
      h('button', { type: 'submit' }, 'Search')),
    h('div', { class: 'row' },
      h('button', {
        type: 'button',
        class: 'secondary',
        id: 'verify',
        onclick: async () => {
          verifyOut.textContent = 'Verifying…';
          try {
            const v = await get('/api/v2/audit/verify');
            const chain = v.chain_ok
              ? `✓ The chain of ${v.records} records is intact (head ${v.head.slice(0, 16)}…).`
              : `✗ The chain is broken: ${(v.problem && v.problem.message) || JSON.stringify(v.problem)}`;
            const m = v.mirror;
            const mirror = !m
              ? 'The mirrored audit log files were not compared.'
              : m.ok
                ? `✓ Its mirror agrees: ${m.mirrored} records in ${m.files} log files (${m.gzipped} gzipped) match the store (${m.not_mirrored} not mirrored here).`
                : '✗ Its mirror does not agree.';
            const a = v.anchor;
            const anchor = !a || !a.ok
              ? ''
              : a.newest
                ? ` ✓ Its anchor holds: ${a.checkpoints} signed checkpoints, the newest of record ${a.newest.seq} at ${a.newest.at}.`
                : ' ✓ Its anchor holds.';
            const reasons = v.ok ? '' : ` Not verified: ${v.reasons.join(' ')}`;
            verifyOut.textContent = `${chain} ${mirror}${anchor}${reasons}`;
            verifyOut.className = v.ok ? 'valid' : 'field-error';
          } catch (x) {
            verifyOut.textContent = x.message;
            verifyOut.className = 'field-error';
          }
        },
      }, 'Verify the chain'),
      verifyOut),
    results);
  await search();
  return null;
}
