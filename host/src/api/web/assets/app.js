// The shell: sign-in, the hash router (#/jobs, #/jobs/<id>, #/executions,
// #/executions/<id>, #/queues, #/plugins, #/tokens) and the navigation. Each page is a
// module whose render(main, ctx) returns a cleanup function (timers,
// streams) that runs when the user leaves the page.

import { ApiError, can, currentSession, setToken, signOut, token, whenUnauthorized } from './api.js';
import { announce, clearStaleStatus, field, h, replace } from './dom.js';
import { renderJobs } from './jobs.js';
import { renderBuilder } from './builder.js';
import { renderExecutions, renderExecution } from './monitor.js';
import { renderQueues } from './dashboard.js';
import { renderPlugins } from './plugins.js';
import { renderTokens } from './tokens.js';

const main = document.getElementById('main');
let cleanup = null;
/** Counts navigations: a page still loading when the user moves on is dropped. */
let generation = 0;

const routes = [
  [/^#\/jobs\/?$/, 'jobs', (ctx) => renderJobs(ctx.root, ctx)],
  [/^#\/jobs\/new$/, 'jobs', (ctx) => renderBuilder(ctx.root, ctx, null)],
  [/^#\/jobs\/([^/]+)$/, 'jobs', (ctx, m) => renderBuilder(ctx.root, ctx, decodeURIComponent(m[1]))],
  [/^#\/executions\/?(\?.*)?$/, 'executions', (ctx, m) => renderExecutions(ctx.root, ctx, new URLSearchParams(m[1]?.slice(1) ?? ''))],
  [/^#\/executions\/([^/?]+)$/, 'executions', (ctx, m) => renderExecution(ctx.root, ctx, decodeURIComponent(m[1]))],
  [/^#\/queues\/?$/, 'queues', (ctx) => renderQueues(ctx.root, ctx)],
  [/^#\/plugins\/?$/, 'plugins', (ctx) => renderPlugins(ctx.root, ctx)],
  [/^#\/tokens\/?$/, 'tokens', (ctx) => renderTokens(ctx.root, ctx)],
];

whenUnauthorized(() => {
  signOut();
  showSignedOut();
  location.hash = '#/signin';
  announce('Your token is not valid any more; sign in again.', 'error');
});

document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
  showSignedOut();
  location.hash = '#/signin';
  announce('Signed out.');
});

function showSignedOut() {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
}

async function route() {
  generation += 1;
  const current = generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      announce(`Leaving the page failed: ${e.message}`, 'error');
    }
    cleanup = null;
  }
  const hash = location.hash || '#/jobs';
  if (!token()) {
    showSignedOut();
    renderSignIn();
    return;
  }
  let session;
  try {
    session = await currentSession();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) announce(`Cannot reach the API: ${e.message}`, 'error');
    showSignedOut();
    renderSignIn();
    return;
  }
  if (current !== generation) return;
  if (hash === '#/signin') {
    location.hash = '#/jobs';
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = `${session.name} (${session.role})`;
  document.body.dataset.role = session.role;
  // Tokens are for admins only: the link shows for them alone.
  document.querySelector('[data-nav="tokens"]').parentElement.hidden = !can(session, 'admin');
  for (const [pattern, nav, render] of routes) {
    const m = hash.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    clearStaleStatus();
    // Each page renders into its own element, so a page that finishes
    // loading after the user moved on changes nothing on screen.
    const root = h('div', { class: 'page' });
    replace(main, root);
    main.setAttribute('aria-busy', 'true');
    try {
      const done = (await render({ session, root }, m)) ?? null;
      if (current !== generation) {
        done?.();
        return;
      }
      cleanup = done;
      main.setAttribute('aria-busy', 'false');
    } catch (e) {
      if (current !== generation) return;
      main.setAttribute('aria-busy', 'false');
      replace(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'field-error' }, e.message));
      announce(e.message, 'error');
    }
    return;
  }
  replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '#/jobs' }, 'Go to the jobs.')));
}

function renderSignIn() {
  document.title = 'Sign in · Meridian';
  const input = h('input', {
    type: 'password',
    name: 'token',
    autocomplete: 'current-password',
    spellcheck: 'false',
    placeholder: 'mrd_…',
  });
  const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'meridian', hidden: true, 'aria-hidden': 'true', tabindex: '-1' });
  const form = h(
    'form',
    {
      class: 'panel signin',
      'aria-labelledby': 'signin-title',
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        const err = form.querySelector('.field-error');
        if (!value) {
          err.textContent = 'Enter an API token.';
          err.hidden = false;
          input.setAttribute('aria-invalid', 'true');
          input.focus();
          return;
        }
        try {
          const s = await currentSession({ tokenOverride: value });
          setToken(value);
          announce(`Signed in as ${s.name} (${s.role}).`, 'ok');
          if (location.hash === '#/jobs') route();
          else location.hash = '#/jobs';
        } catch (e) {
          err.textContent = e.status === 401 ? 'This token is not valid (unknown or revoked).' : e.message;
          err.hidden = false;
          input.setAttribute('aria-invalid', 'true');
          input.focus();
        }
      },
    },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h(
      'p',
      { class: 'muted' },
      'Paste an API token. The first start of meridian serve prints an admin token; ',
      h('code', {}, 'meridian token create --role viewer'),
      ' makes more. The token stays in this tab only.',
    ),
    username,
    field('API token', input, { required: true }),
    h('button', { type: 'submit' }, 'Sign in'),
  );
  replace(main, form);
  input.focus();
}

window.addEventListener('hashchange', () => {
  // Focus moves to the new page (unless the page put it somewhere itself),
  // so keyboard and screen-reader users start at its top.
  route().then(() => {
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
  });
});
route();
