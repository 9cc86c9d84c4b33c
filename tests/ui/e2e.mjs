// End-to-end tests of Meridian's web UI in Debian's Chromium, driven by
// playwright-core (no browser download: executablePath /usr/bin/chromium,
// headless, --no-sandbox). Plain node, no test runner: each scenario is a
// step of one run; the first failure ends it with exit status 1.
//
// tests/it/ui.rs starts a real `meridian serve` and runs this script with:
//   MERIDIAN_URL            the node's base URL (http://127.0.0.1:PORT)
//   MERIDIAN_ADMIN_TOKEN    the first admin token
//   MERIDIAN_OPERATOR_TOKEN an operator token
//   MERIDIAN_VIEWER_TOKEN   a viewer token
//   MERIDIAN_HTTP_BASE      a loopback HTTP server the http step may call
//                           (/json, /echo)
//   MERIDIAN_SQL_CONNECTION the SQL connection the sql step may use
//   MERIDIAN_UPLOAD_WASM    a plugin component (trivial.wasm) to upload
//   MERIDIAN_SCREENSHOTS    where to save a screenshot of each page
//   CHROMIUM                the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
};
const BASE = env('MERIDIAN_URL').replace(/\/$/, '');
const ADMIN = env('MERIDIAN_ADMIN_TOKEN');
const OPERATOR = env('MERIDIAN_OPERATOR_TOKEN');
const VIEWER = env('MERIDIAN_VIEWER_TOKEN');
const HTTP = env('MERIDIAN_HTTP_BASE').replace(/\/$/, '');
const SQL = env('MERIDIAN_SQL_CONNECTION', 'app');
const UPLOAD = env('MERIDIAN_UPLOAD_WASM');
const SHOTS = env('MERIDIAN_SCREENSHOTS', 'target/ui-screenshots');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const JOB = `ui-e2e-${Date.now().toString(36)}`;
const ZONE = 'Pacific/Auckland';
mkdirSync(SHOTS, { recursive: true });

const problems = [];
const assets = new Set();

function watch(page, who) {
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${who} console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${who} page error: ${err.message}`));
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname === '/ui/' || url.pathname.startsWith('/ui/')) assets.add(url.pathname);
  });
}

/** The bytes of every UI file the pages loaded (uncompressed). */
async function pageWeight(request) {
  let total = 0;
  for (const path of assets) total += (await (await request.get(`${BASE}${path}`)).body()).length;
  return total;
}

let step = 0;
async function scenario(name, fn) {
  step += 1;
  const started = Date.now();
  process.stdout.write(`${step}. ${name} … `);
  await fn();
  console.log(`ok (${Date.now() - started} ms)`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, token) {
  await page.goto(`${BASE}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Jobs', exact: true }).waitFor();
}

/** Every form control in main has a label (or an aria-label). */
async function assertLabelled(page) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('main input:not([type=hidden]):not([hidden]), main select, main textarea')]
    .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, [], 'controls without a label');
}

const card = (page, id) => page.locator('li.step', { has: page.locator('.step-name', { hasText: new RegExp(`^${id}$`) }) });
const order = (page) => page.locator('li.step .step-name').allTextContents();

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  watch(page, 'operator');

  await scenario('the root redirects to the UI, served with strict headers', async () => {
    const res = await page.goto(`${BASE}/`);
    assert.equal(new URL(page.url()).pathname, '/ui/');
    const h = res.headers();
    assert.match(h['content-security-policy'], /default-src 'self'/);
    assert.doesNotMatch(h['content-security-policy'], /unsafe-inline/);
    assert.equal(h['x-content-type-options'], 'nosniff');
    assert.match(h['content-type'], /^text\/html/);
    assert.ok(h.etag, 'an ETag');
    const js = await page.request.get(`${BASE}/ui/app.js`);
    assert.match(js.headers()['content-type'], /^text\/javascript/);
    const again = await page.request.get(`${BASE}/ui/app.js`, { headers: { 'If-None-Match': js.headers().etag } });
    assert.equal(again.status(), 304);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Sign out' }).isVisible(), false);
    assert.equal(await page.getByRole('navigation', { name: 'Main' }).isVisible(), false);
    await shot(page, '01-sign-in');
  });

  await scenario('a wrong token is refused at its field', async () => {
    await page.getByLabel('API token').fill('mrd_not-a-token');
    // The refused sign-in answers 401; the browser logs that as a failed load.
    const before = problems.length;
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.field-error', { hasText: 'not valid' }).waitFor();
    problems.splice(before);
  });

  await scenario('an operator signs in and sees the jobs list', async () => {
    await signIn(page, OPERATOR);
    await page.locator('#who-name', { hasText: '(operator)' }).waitFor();
    await shot(page, '02-jobs');
  });

  await scenario('builds a three-step job (HTTP → SQL → HTTP) with mouse and keyboard', async () => {
    await page.getByRole('link', { name: 'New job' }).click();
    await page.getByRole('heading', { name: 'New job' }).waitFor();
    await page.getByLabel('Job id').fill(JOB);
    await page.getByLabel(/^Name\b/).fill('UI end-to-end job');
    await page.getByLabel('Time zone').fill(ZONE);

    // Added in the wrong order on purpose: sql, http, http.
    const add = async (type, id) => {
      await page.getByLabel('Step type').selectOption(type);
      await page.getByRole('button', { name: 'Add step' }).click();
      const idInput = page.locator('li.step').last().locator('[data-role="step-id"]');
      // Focus lands on the new step's id.
      await assert.doesNotReject(idInput.evaluate((el) => {
        if (document.activeElement !== el) throw new Error('focus is not on the new step');
      }));
      await idInput.fill(id);
    };
    await add('sql', 'query');
    await add('http', 'notify');
    await add('http', 'fetch');
    assert.deepEqual(await order(page), ['query', 'notify', 'fetch']);

    // Mouse: drag fetch by its handle onto the first step.
    await page.dragAndDrop('li.step:nth-child(3) .handle', 'li.step:nth-child(1)');
    assert.deepEqual(await order(page), ['fetch', 'query', 'notify']);
    // Keyboard: Alt+ArrowDown inside a step moves it, the move buttons too.
    await card(page, 'fetch').locator('[data-role="step-id"]').focus();
    await page.keyboard.press('Alt+ArrowDown');
    assert.deepEqual(await order(page), ['query', 'fetch', 'notify']);
    await page.locator('#status', { hasText: 'Moved step fetch to position 2' }).waitFor();
    const focused = await page.evaluate(() => document.activeElement?.closest('li.step')?.querySelector('.step-name')?.textContent);
    assert.equal(focused, 'fetch', 'focus stays with the moved step');
    await card(page, 'fetch').getByRole('button', { name: 'Move step fetch up' }).focus();
    await page.keyboard.press('Enter');
    assert.deepEqual(await order(page), ['fetch', 'query', 'notify']);

    // Step 1: fetch JSON from the test server, exporting a value.
    const fetch = card(page, 'fetch');
    await fetch.locator('[data-path="steps[0].config.url"] input').fill(`${HTTP}/json`);
    await fetch.getByText('More settings').click();
    await fetch.locator('[data-path="steps[0].config.extract"] textarea').fill('{"code": "/status/code"}');
    // Flow and retries: two attempts, a timeout.
    await fetch.getByText('Flow, retries and timeout').click();
    await fetch.getByLabel('Attempts').fill('2');
    await fetch.getByLabel('Timeout (ms)').fill('10000');
    // Step 2: a query on the granted SQL connection.
    const query = card(page, 'query');
    await query.locator('[data-path="steps[1].config.connection"] input').fill(SQL);
    await query.getByText('More settings').click();
    await query.locator('[data-path="steps[1].config.query"] textarea').fill('SELECT 41 + 1 AS answer');
    await query.locator('[data-path="steps[1].config.result"] select').selectOption('"scalar"');
    // Step 3: the variables of earlier steps are offered.
    const notify = card(page, 'notify');
    const offered = await notify.locator('datalist option').evaluateAll((os) => os.map((o) => o.value));
    assert.ok(offered.includes('${steps.fetch.exports.code}'), `offered: ${offered}`);
    assert.ok(offered.includes('${steps.query.output}'), `offered: ${offered}`);
    assert.ok(!offered.some((o) => o.includes('steps.notify')), 'a step is not offered its own output');
    await notify.locator('[data-path="steps[2].config.url"] input')
      .fill(`${HTTP}/echo?answer=\${steps.query.output.value}&code=\${steps.fetch.exports.code}`);
    await page.locator('#valid').waitFor();
    await assertLabelled(page);
  });

  await scenario('a validation error appears at the right field', async () => {
    const url = page.locator('[data-path="steps[0].config.url"]');
    await url.locator('input').fill('not a url');
    await url.locator('.field-error', { hasText: 'not a valid absolute URL' }).waitFor();
    assert.equal(await url.locator('input').getAttribute('aria-invalid'), 'true');
    await page.locator('#validation', { hasText: 'steps[0].config.url' }).waitFor();
    // Other fields carry no error.
    assert.equal(await page.locator('[data-path="steps[2].config.url"] .field-error').isVisible(), false);
    await shot(page, '03-builder-error');
    // An unknown step in a variable is named at its field too.
    await url.locator('input').fill(`${HTTP}/json`);
    const notifyUrl = page.locator('[data-path="steps[2].config.url"]');
    await notifyUrl.locator('input').fill(`${HTTP}/echo?x=\${steps.nosuch.output}`);
    await notifyUrl.locator('.field-error', { hasText: 'nosuch' }).waitFor();
    await notifyUrl.locator('input')
      .fill(`${HTTP}/echo?answer=\${steps.query.output.value}&code=\${steps.fetch.exports.code}`);
    await page.locator('#valid').waitFor();
  });

  await scenario('saves the job and edits a schedule with its DST preview', async () => {
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#status', { hasText: `Saved ${JOB}, version 1` }).waitFor();
    assert.equal(new URL(page.url()).hash, `#/jobs/${JOB}`);
    await page.getByRole('heading', { name: 'Schedules' }).waitFor();
    await page.getByLabel('Cron expression').fill('30 2 * * *');
    await page.locator('#schedule-zone').fill('Australia/Sydney');
    // Sydney keeps daylight saving time from October to April; London
    // does not in winter: the preview flags each fire.
    await page.locator('#schedule-preview tbody tr').first().waitFor();
    const sydneyDst = await page.locator('#schedule-preview .badge', { hasText: 'DST' }).count();
    await page.locator('#schedule-zone').fill('America/Santiago');
    await page.locator('#schedule-preview caption', { hasText: 'America/Santiago' }).waitFor();
    const month = new Date().getUTCMonth();
    if (month >= 10 || month <= 1) assert.ok(sydneyDst > 0, 'Sydney fires in summer are DST');
    await page.getByLabel('Misfire policy').selectOption('all');
    await page.getByLabel('When a run is still going').selectOption('buffer_one');
    await page.getByRole('button', { name: 'Create schedule' }).click();
    await page.locator('#schedule-list td', { hasText: `${JOB}-schedule` }).waitFor();
    await page.locator('#schedule-list').getByRole('button', { name: 'Pause' }).click();
    await page.locator('#schedule-list td', { hasText: 'paused' }).waitFor();
    await page.locator('#schedule-list').getByRole('button', { name: 'Resume' }).click();
    await page.locator('#schedule-list td', { hasText: 'active' }).waitFor();
    await assertLabelled(page);
    await shot(page, '04-builder');
  });

  let executionId;
  await scenario('runs it, watches it succeed and reads its logs', async () => {
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.waitForURL(/#\/executions\/.+/);
    executionId = decodeURIComponent(new URL(page.url()).hash.split('/').pop());
    await page.locator('#execution-status', { hasText: 'succeeded' }).waitFor({ timeout: 60_000 });
    const rows = page.locator('#step-runs tbody tr');
    assert.equal(await rows.count(), 3);
    for (const id of ['fetch', 'query', 'notify']) {
      await page.locator(`#step-runs tr[data-step="${id}"] .badge`, { hasText: 'succeeded' }).waitFor();
    }
    await page.locator('#log-state[data-state="complete"]').waitFor({ timeout: 30_000 });
    const log = await page.locator('#log').textContent();
    assert.match(log, /execution started/);
    assert.match(log, new RegExp(`GET ${HTTP.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/json`));
    assert.match(log, /echo\?answer=42&code=7/, 'the variables were resolved');
    await page.locator('#status', { hasText: 'Execution succeeded' }).waitFor();
    await shot(page, '05-monitor');
  });

  await scenario('cancels a running execution and runs it again', async () => {
    // A job whose first step waits on the test server: long enough to
    // cancel, short enough to run again.
    const headers = { Authorization: `Bearer ${OPERATOR}` };
    const slow = `${JOB}-slow`;
    const stored = await page.request.post(`${BASE}/api/v2/jobs`, {
      headers,
      data: {
        id: slow,
        name: 'UI slow job',
        timezone: ZONE,
        steps: [
          { id: 'wait', type: 'http', config: { url: `${HTTP}/slow?ms=2500` } },
          { id: 'after', type: 'http', config: { url: `${HTTP}/json` } },
        ],
      },
    });
    assert.equal(stored.status(), 200, await stored.text());
    const started = await page.request.post(`${BASE}/api/v2/jobs/execute`, { headers, data: { job_id: slow } });
    assert.equal(started.status(), 202);
    const { execution_id: id } = await started.json();
    await page.goto(`${BASE}/ui/#/executions/${id}`);
    await page.locator('#execution-status', { hasText: /queued|running/ }).waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.locator('#execution-status', { hasText: 'cancelled' }).waitFor({ timeout: 30_000 });
    await page.locator('#status', { hasText: 'Execution cancelled' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel' }).isDisabled(), true);
    await page.locator('#log-state[data-state="complete"]').waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Run again' }).click();
    await page.waitForURL((url) => url.hash.startsWith('#/executions/') && !url.hash.endsWith(id));
    await page.locator('#execution-status', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
  });

  await scenario('the history lists the run, filtered by job', async () => {
    await page.getByRole('link', { name: 'Executions' }).click();
    await page.getByLabel('Job id').fill(JOB);
    await page.getByLabel('Status').selectOption('succeeded');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('tbody a', { hasText: executionId.slice(-12) }).waitFor();
    await assertLabelled(page);
    await shot(page, '06-executions');
  });

  await scenario('the dashboard shows the run in the job\'s zone, updating live', async () => {
    await page.getByRole('link', { name: 'Queues' }).click();
    const zoneCard = page.locator(`[data-zone="${ZONE}"]`);
    await zoneCard.waitFor();
    // The three-step run and the run again succeeded (the slow one was cancelled).
    await zoneCard.locator('dd', { hasText: /^2 ok/ }).waitFor();
    const first = await page.locator('#queues-updated').textContent();
    await page.waitForFunction((t) => document.getElementById('queues-updated').textContent !== t, first, { timeout: 6000 });
    assert.equal(await zoneCard.locator('svg.spark polyline').count(), 1);
    // The cluster view: this node, alive.
    const node = page.locator('#cluster-nodes tbody tr').first();
    await node.waitFor();
    assert.equal((await node.locator('td').first().textContent()).trim(), 'alive');
    await shot(page, '07-queues');
  });

  await scenario('the jobs list finds the job by search and status', async () => {
    await page.getByRole('link', { name: 'Jobs' }).click();
    const rows = (n) => page.waitForFunction((want) => document.querySelectorAll('main tbody tr').length === want, n);
    await page.getByLabel('Search').fill(JOB);
    await rows(2);
    await page.getByLabel('Search').fill(`${JOB}-slow`);
    await rows(1);
    await page.locator('tbody tr', { hasText: 'UI slow job' }).waitFor();
    await page.getByLabel('Search').fill(JOB);
    await page.getByLabel('Last run').selectOption('succeeded');
    await rows(2);
    await page.getByLabel('Last run').selectOption('failed');
    await rows(0);
    await page.locator('main p', { hasText: /^0 of \d+ jobs$/ }).waitFor();
    await assertLabelled(page);
  });

  await scenario('plugins: an operator sees what each plugin asks for', async () => {
    await page.getByRole('link', { name: 'Plugins' }).click();
    await page.locator('[data-plugin="http"]').waitFor();
    assert.equal(await page.locator('#grants').count(), 0, 'grants are for auditors and admins');
    await shot(page, '08-plugins-operator');
  });

  await scenario('signing out clears the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  await scenario('an admin sees asked, granted and used capabilities, grants and the audit trail', async () => {
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Plugins' }).click();
    const http = page.locator('[data-plugin="http"]');
    await http.getByRole('heading', { name: 'Granted' }).waitFor();
    await http.locator('li', { hasText: 'GET' }).first().waitFor();
    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page.locator('#verify-result', { hasText: 'intact' }).waitFor();
    await page.locator('#verify-result', { hasText: 'Its mirror agrees' }).waitFor();
    await page.getByLabel('Kind').fill('api');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#audit-results tbody tr').first().waitFor();
    await assertLabelled(page);
    await shot(page, '09-plugins-admin');
    // Grant editing: create one (the form's example), see it, revoke it.
    const grants = page.locator('#grants');
    const before = await grants.locator('tbody tr').count();
    await page.getByRole('button', { name: 'Create grant' }).click();
    await page.locator('#status', { hasText: 'Grant created' }).waitFor();
    await grants.locator('tbody tr').nth(before).waitFor();
    const revoke = grants.getByRole('button', { name: /^Revoke grant / });
    assert.equal(await revoke.count(), 1, 'only the stored grant can be revoked');
    await revoke.click();
    await page.locator('#status', { hasText: /Grant .* revoked/ }).waitFor();
    await grants.getByRole('button', { name: /^Revoke grant / }).waitFor({ state: 'detached' });
  });

  await scenario('an admin uploads a plugin, sees it, and removes it', async () => {
    await page.getByRole('link', { name: 'Plugins' }).click();
    await page.locator('#upload-plugin').waitFor();
    // Nothing chosen: refused at the file's field.
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#upload-plugin .field-error', { hasText: 'Choose a .wasm file' }).waitFor();
    await page.getByLabel('Component (.wasm)').setInputFiles(UPLOAD);
    assert.equal(await page.getByLabel('Plugin name').inputValue(), 'trivial');
    // A name its component does not describe: a 422 naming `name`, at that
    // field (the browser logs the 422 as a failed load).
    await page.getByLabel('Plugin name').fill('not-trivial');
    const before422 = problems.length;
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#upload-plugin .field-error', { hasText: 'trivial' }).waitFor();
    problems.splice(before422);
    await page.getByLabel('Plugin name').fill('trivial');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#status', { hasText: 'Plugin trivial uploaded' }).waitFor();
    const plugin = page.locator('[data-plugin="trivial"]');
    await plugin.waitFor();
    assert.match(await plugin.textContent(), /file/);
    assert.equal(await page.getByRole('button', { name: 'Remove plugin http' }).count(), 0, 'built-in plugins stay');
    await assertLabelled(page);
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Remove plugin trivial' }).click();
    await page.locator('#status', { hasText: 'Plugin trivial removed' }).waitFor();
    await plugin.waitFor({ state: 'detached' });
  });

  await scenario('an admin makes a token, sees it once, and revokes it', async () => {
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByRole('heading', { name: 'API tokens' }).waitFor();
    await page.locator('[data-token="ui-viewer"]').waitFor();
    await page.getByLabel('Name').fill('ui-made');
    await page.getByLabel('Role').selectOption('viewer');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shown = page.getByLabel('The new token ui-made');
    await shown.waitFor();
    const made = await shown.inputValue();
    assert.match(made, /^mrd_/);
    const headers = { Authorization: `Bearer ${made}` };
    const before = await page.request.get(`${BASE}/api/v2/session`, { headers });
    assert.equal(before.status(), 200);
    assert.equal((await before.json()).role, 'viewer');
    // The same name again is refused at its field (a 409, which the
    // browser logs as a failed load).
    await page.getByLabel('Name').fill('ui-made');
    const before409 = problems.length;
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.locator('#new-token .field-error', { hasText: /already exists/ }).waitFor();
    problems.splice(before409);
    await assertLabelled(page);
    await shot(page, '11-tokens');
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Revoke token ui-made' }).click();
    await page.locator('[data-token="ui-made"] .badge', { hasText: 'revoked' }).waitFor();
    const after = await page.request.get(`${BASE}/api/v2/session`, { headers });
    assert.equal(after.status(), 401);
  });

  await scenario('a viewer cannot edit: no save or run, inputs read-only, the API refuses', async () => {
    const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const v = await viewerContext.newPage();
    v.setDefaultTimeout(15_000);
    watch(v, 'viewer');
    await signIn(v, VIEWER);
    assert.equal(await v.getByRole('link', { name: 'New job' }).count(), 0);
    assert.equal(await v.getByRole('link', { name: 'Tokens' }).count(), 0, 'tokens are for admins');
    await v.goto(`${BASE}/ui/#/jobs/${JOB}`);
    await v.locator('#read-only-note').waitFor();
    await v.locator('li.step').first().waitFor();
    for (const id of ['#save', '#run', '#add-step', '#create-schedule', '[data-role="remove"]', '[data-role="move-up"]', '.handle']) {
      assert.equal(await v.locator(id).count(), 0, `${id} is not offered to a viewer`);
    }
    const editable = await v.evaluate(() => [...document.querySelectorAll('main input, main textarea, main select')]
      .filter((el) => !(el.readOnly || el.disabled))
      .map((el) => el.outerHTML.slice(0, 80)));
    assert.deepEqual(editable, [], 'every control is read-only');
    await assertLabelled(v);
    await v.locator('#valid').waitFor();
    await shot(v, '10-builder-viewer');
    // A forced call with the viewer's token is refused by the API.
    const headers = { Authorization: `Bearer ${VIEWER}`, 'Content-Type': 'application/json' };
    const save = await v.request.post(`${BASE}/api/v2/jobs`, { headers, data: { id: JOB, name: 'hijacked', steps: [] } });
    assert.equal(save.status(), 403);
    assert.equal((await save.json()).code, 'forbidden');
    const run = await v.request.post(`${BASE}/api/v2/jobs/execute`, { headers, data: { job_id: JOB } });
    assert.equal(run.status(), 403);
    const session = await v.request.get(`${BASE}/api/v2/session`, { headers });
    assert.deepEqual((await session.json()).permissions, ['read']);
    await viewerContext.close();
  });

  await scenario('works at 390 px wide', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    // Each page with what shows it has loaded.
    const pages = [
      ['#/jobs', '11-narrow-jobs', `main tbody a[href="#/jobs/${JOB}"]`],
      [`#/jobs/${JOB}`, '12-narrow-builder', '#valid'],
      ['#/queues', '13-narrow-queues', `[data-zone="${ZONE}"]`],
      [`#/executions/${executionId}`, '14-narrow-monitor', '#log-state[data-state="complete"]'],
      ['#/plugins', '15-narrow-plugins', '#verify'],
      ['#/tokens', '16-narrow-tokens', '[data-token="ui-made"]'],
    ];
    for (const [hash, name, ready] of pages) {
      await page.goto(`${BASE}/ui/${hash}`);
      // A hash change re-renders main: wait for content only this page has.
      await page.locator(ready).first().waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${hash} overflows by ${overflow} px`);
      await shot(page, name);
    }
  });

  await scenario('no console error or warning, no page error', async () => {
    assert.deepEqual(problems, []);
  });
  console.log(`page weight: ${assets.size} UI files, ${await pageWeight(page.request)} bytes uncompressed`);
  console.log(`screenshots in ${SHOTS}`);
} catch (e) {
  failed = true;
  console.log('FAILED');
  console.error(e);
  if (problems.length) console.error(`console problems so far:\n${problems.join('\n')}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
