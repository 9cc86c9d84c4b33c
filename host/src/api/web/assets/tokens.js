// API tokens (admins): the tokens by name and role, never the tokens
// themselves; a new token of a role, shown once to copy; revoking one.
// Each change is on the audit trail (kind `token`).

import { ApiError, api, can, get, post } from './api.js';
import { announce, field, h, replace, time } from './dom.js';

const ROLES = [
  ['viewer', 'read'],
  ['operator', 'read, create, change, run, cancel'],
  ['auditor', 'read, the audit trail, grants and capabilities'],
  ['admin', 'everything, tokens and grants too'],
];

export async function renderTokens(main, { session }) {
  document.title = 'Tokens · Meridian';
  if (!can(session, 'admin')) {
    replace(main, h('h1', {}, 'API tokens'), h('p', { class: 'muted' }, 'Only admins manage API tokens.'));
    return null;
  }
  const list = h('div', { id: 'token-list' });
  const made = h('div', { id: 'token-made', 'aria-live': 'polite' });
  const name = h('input', { type: 'text', autocomplete: 'off', maxlength: '100' });
  const role = h('select', {}, ROLES.map(([r, what]) => h('option', { value: r }, `${r} (${what})`)));
  const nameField = field('Name', name, { hint: 'Who or what uses it, e.g. ci-pipeline; names are unique.', required: true });
  const nameError = nameField.querySelector('.field-error');
  const form = h('form', {
    id: 'new-token',
    onsubmit: async (e) => {
      e.preventDefault();
      nameError.hidden = true;
      name.removeAttribute('aria-invalid');
      try {
        const t = await post('/api/v2/tokens', { name: name.value.trim(), role: role.value });
        const value = h('input', { type: 'text', readonly: true, size: '72', value: t.token, class: 'mono', 'aria-label': `The new token ${t.name}` });
        replace(made, h('section', { class: 'panel' },
          h('h2', {}, `Token ${t.name} (${t.role})`),
          h('p', {}, 'Copy it now: it is shown this once and cannot be read back.'),
          value,
          h('button', {
            type: 'button',
            class: 'secondary',
            onclick: async () => {
              value.select();
              try {
                await navigator.clipboard.writeText(t.token);
                announce('Token copied.', 'ok');
              } catch {
                announce('Select the token and copy it.', 'info');
              }
            },
          }, 'Copy')));
        announce(`Token ${t.name} created.`, 'ok');
        name.value = '';
        await draw();
      } catch (x) {
        nameError.textContent = x instanceof ApiError && x.errors.length
          ? x.errors.map((i) => `${i.path}: ${i.message}`).join('; ')
          : x.message;
        nameError.hidden = false;
        name.setAttribute('aria-invalid', 'true');
      }
    },
  }, h('h2', {}, 'New token'), nameField, field('Role', role), h('button', { type: 'submit' }, 'Create token'));
  replace(main, h('h1', {}, 'API tokens'), made, h('section', { class: 'panel' }, form), list);

  async function draw() {
    const { tokens } = await get('/api/v2/tokens');
    const live = tokens.filter((t) => !t.revoked_at);
    const revoked = tokens.length - live.length;
    replace(list, h('p', { class: 'muted' }, `${live.length} live tokens${revoked ? `, ${revoked} revoked` : ''}`),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Role', 'Created', 'By', 'Last used', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, tokens.map((t) => h('tr', { 'data-token': t.name },
          h('td', {}, t.name, t.name === session.name ? h('span', { class: 'muted' }, ' (you)') : null),
          h('td', {}, t.role),
          h('td', {}, time(t.created_at)),
          h('td', {}, t.created_by ?? ''),
          h('td', {}, t.last_used_at ? time(t.last_used_at) : 'never'),
          h('td', {}, t.revoked_at
            ? h('span', { class: 'badge s-bad' }, `revoked ${time(t.revoked_at)}`)
            : h('button', {
              type: 'button',
              class: 'danger',
              'aria-label': `Revoke token ${t.name}`,
              onclick: async () => {
                const self = t.name === session.name;
                if (!window.confirm(self
                  ? `Revoke ${t.name}, the token you are signed in with? You will be signed out.`
                  : `Revoke ${t.name}? Whoever uses it is refused from now on.`)) return;
                try {
                  await api('DELETE', `/api/v2/tokens/${encodeURIComponent(t.id)}`);
                  announce(`Token ${t.name} revoked.`, 'ok');
                } catch (x) {
                  announce(`Revoke failed: ${x.message}`, 'error');
                }
                // Revoking one's own token: this refresh is refused and
                // signs the user out.
                try {
                  await draw();
                } catch (x) {
                  if (!self) announce(x.message, 'error');
                }
              },
            }, 'Revoke'))))))));
  }
  await draw();
  return null;
}
