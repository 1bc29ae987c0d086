// The web console in a real browser: Debian's chromium driven by playwright-core against a real
// cluster started by crates/dmq/tests/console.rs, which passes (environment):
//   DMQ_CONSOLE_URL   the console of one metadata node (http://127.0.0.1:<port>/ui/)
//   DMQ_METADATA      every metadata node's base URL, comma-separated (for the dmq CLI, too)
//   DMQ_BOOTSTRAP     the Kafka bootstrap list (for the dmq CLI)
//   DMQ_BIN           the dmq binary (a real client: produce, consume --group)
//   SCREENSHOT_DIR    where the screenshots go (target/console-screenshots)
//   CHROMIUM          the browser (default /usr/bin/chromium)
// Killing a broker is the Rust side's job (it owns the processes): this script prints
// `@@ KILL_BROKER <id>` on stdout and reads `KILLED <epoch ms>` from stdin. Everything else it
// prints is log. Every wait has a deadline; the script exits 0 only if every step passed.
import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const CONSOLE = env('DMQ_CONSOLE_URL');
const METADATA = env('DMQ_METADATA').split(',');
const DMQ = env('DMQ_BIN');
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const TOPIC = 'console-orders';
const GROUP = 'console-group';
/** The whole script's deadline: a hung browser must not hang the test. */
const SCRIPT_TIMEOUT_MS = 300_000;
/** SPEC/issue: the console shows a dead broker OFFLINE within 3 s. */
const OFFLINE_SHOWN_MS_MAX = 3_000;

mkdirSync(SHOTS, { recursive: true });
const started = Date.now();
const log = (...a) => console.error(`[console-e2e +${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
setTimeout(() => {
  log(`FAILED: the script did not finish within ${SCRIPT_TIMEOUT_MS} ms`);
  process.exit(3);
}, SCRIPT_TIMEOUT_MS).unref();

// --- talking to the Rust side --------------------------------------------------------------
const stdinLines = createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
stdinLines.on('line', (line) => (waiters.length ? waiters.shift()(line) : pending.push(line)));
function readLine() {
  return pending.length ? Promise.resolve(pending.shift()) : new Promise((resolve) => waiters.push(resolve));
}

// --- real clients --------------------------------------------------------------------------
function dmq(args, input, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const child = execFile(DMQ, args, { timeout: timeoutMs, env: process.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`dmq ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

/** `dmq produce` of `values` (as key:value lines) to one partition. */
async function produce(lines, partition) {
  const out = await dmq(['produce', TOPIC, '--partition', String(partition), '--key-separator', ':'], lines.join('\n') + '\n');
  log(out.trim());
}

async function getJson(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`GET ${url}: HTTP ${resp.status} ${await resp.text()}`);
  return resp.json();
}

async function partitionLeader(partition) {
  const t = await getJson(`${METADATA[0]}/api/v1/metadata/topics/${TOPIC}?consistent=true`);
  return t.partitions[partition].leader;
}

/** One record with headers through the leader broker's HTTP API (SPEC §4). */
async function produceWithHeaders() {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const leader = await partitionLeader(0);
    const b = await getJson(`${METADATA[0]}/api/v1/metadata/brokers/${leader}`);
    const resp = await fetch(`http://${b.host}:${b.port}/api/v1/storage/topics/${TOPIC}/partitions/0`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'with-headers', value: 'hello-headers', headers: { 'trace-id': 'abc-123', source: 'console-e2e' } }),
    });
    if (resp.ok) return;
    if (Date.now() > deadline) throw new Error(`HTTP produce: ${resp.status} ${await resp.text()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// --- the browser ---------------------------------------------------------------------------
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.setDefaultTimeout(15_000);

const shot = (p, name) => p.screenshot({ path: path.join(SHOTS, name), fullPage: true });
const visible = (p, selector, timeout = 15_000) => p.locator(selector).first().waitFor({ state: 'visible', timeout });
const count = (p, selector, n, timeout = 15_000) =>
  p.waitForFunction(([s, k]) => document.querySelectorAll(s).length === k, [selector, n], { timeout });
const go = async (p, hash) => {
  await p.goto(new URL(hash, CONSOLE).href);
};

let current = 'start';
async function step(name, fn) {
  current = name;
  const t = Date.now();
  log(`--- ${name}`);
  await fn();
  log(`ok: ${name} (${Date.now() - t} ms)`);
}

try {
  await step('overview shows the quorum and three ONLINE brokers', async () => {
    await go(page, '#/');
    await count(page, '#brokers tr[data-status="ONLINE"]', 3, 20_000);
    await count(page, '#raft-members tr[data-node-id]', 3);
    await visible(page, '#raft-members tr[data-state="LEADER"]');
    await shot(page, '01-overview.png');
  });

  await step('create a topic from the UI', async () => {
    await page.click('nav a[href="#/topics"]');
    await page.fill('#create-topic input[name="topicName"]', TOPIC);
    await page.fill('#create-topic input[name="numPartitions"]', '3');
    await page.fill('#create-topic input[name="replicationFactor"]', '3');
    await page.fill('#create-topic textarea[name="config"]', 'retention.ms=3600000');
    await page.click('#create-topic button[type="submit"]');
    await page.locator('#create-topic p.ok', { hasText: `Created topic ${TOPIC}` }).waitFor();
    await visible(page, `#topics tr[data-topic="${TOPIC}"]`);
    await page.click(`#topics tr[data-topic="${TOPIC}"] a`);
    await count(page, '#partitions tr[data-partition]', 3);
    await page.waitForFunction(
      () => [...document.querySelectorAll('#partitions tr[data-partition]')].every((r) => Number(r.dataset.leader) >= 0),
      null,
      { timeout: 15_000 },
    );
    await visible(page, '#topic-configs tr[data-config="retention.ms"]');
    await shot(page, '02-topic-created.png');
  });

  await step('records produced by a client show in the message browser', async () => {
    await produce(Array.from({ length: 10 }, (_, i) => `key-${i + 1}:hello-${i + 1}`), 0);
    await produceWithHeaders();
    // The high watermark reaches the browser with the next poll of the topic; load until all
    // eleven records are there.
    const deadline = Date.now() + 15_000;
    for (;;) {
      await page.click('#message-browser button[type="submit"]');
      try {
        await count(page, '#records tr[data-offset]', 11, 1_000);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    await page.locator('#records td', { hasText: 'hello-10' }).first().waitFor();
    await page.locator('#records tr[data-offset="10"]', { hasText: 'trace-id' }).waitFor();
    await page.locator('#records tr[data-offset="10"]', { hasText: 'abc-123' }).waitFor();
    await page.locator('#records tr[data-offset="0"]', { hasText: 'key-1' }).waitFor();
    await shot(page, '03-messages.png');
  });

  let consumer;
  await step('a consumer group shows its member, assignment and lag', async () => {
    // Reads everything, commits, stays idle 8 s as a member, then commits and leaves.
    consumer = dmq(['consume', TOPIC, '--group', GROUP, '--from-beginning', '--timeout-ms', '8000'], undefined, 60_000);
    await go(page, '#/groups');
    await visible(page, `#groups tr[data-group="${GROUP}"]`, 20_000);
    await page.click(`#groups tr[data-group="${GROUP}"] a`);
    await page.locator('#members tr', { hasText: `${TOPIC}: 0, 1, 2` }).waitFor({ timeout: 20_000 });
    await visible(page, '#offsets tr[data-partition="0"][data-lag="0"]', 20_000);
    if (!(await page.locator('#reset-offsets button[type="submit"]').isDisabled())) {
      throw new Error('reset is offered while the group has active members');
    }
    await shot(page, '04-group-active.png');
    await consumer;
    await page.locator('[data-testid="group-members"] .card-value', { hasText: /^0$/ }).waitFor({ timeout: 20_000 });
  });

  await step('the group lag grows when records arrive', async () => {
    await produce(Array.from({ length: 5 }, (_, i) => `key-${i + 11}:hello-${i + 11}`), 0);
    await visible(page, '#offsets tr[data-partition="0"][data-lag="5"]', 15_000);
    await shot(page, '05-group-lag.png');
  });

  await step('reset the group to the earliest offsets from the UI', async () => {
    await page.selectOption('#reset-offsets select[name="to"]', 'earliest');
    await page.click('#reset-offsets button[type="submit"]');
    await page.locator('#reset-offsets p.ok', { hasText: 'Offsets reset' }).waitFor();
    await visible(page, '#offsets tr[data-partition="0"][data-lag="16"]', 15_000);
    await shot(page, '06-group-reset.png');
  });

  await step('live charts draw the brokers\' metrics', async () => {
    const bench = dmq(['bench', 'produce', TOPIC, '--records', '12000', '--record-size', '200', '--throughput', '1500', '--acks', '1'], undefined, 60_000);
    // A plain consumer alongside: bytes and records out, and fetch latency.
    const reader = dmq(['consume', TOPIC, '--timeout-ms', '4000'], undefined, 60_000);
    await go(page, '#/charts');
    // Tolerant of a broker without the metric ("no data"), strict when the brokers have it.
    const first = await getJson(`${METADATA[0]}/api/v1/metadata/brokers`);
    const b = first.find((x) => x.status === 'ONLINE');
    const text = await (await fetch(`http://${b.host}:${b.port}/metrics`)).text();
    if (text.includes('kafka_server_brokertopicmetrics_bytes_in_total')) {
      await visible(page, '#chart-bytes-in[data-ready="true"] canvas', 30_000);
      await visible(page, '#chart-records-in[data-ready="true"] canvas', 30_000);
      await page.waitForFunction(() => Number(document.querySelector('#chart-bytes-in').dataset.points) >= 4, null, { timeout: 30_000 });
    } else {
      log('the brokers expose no per-topic byte counters yet: expecting "no data"');
      await page.locator('#chart-bytes-in .nodata', { hasText: 'no data' }).waitFor();
    }
    if (text.includes('kafka_request_latency_seconds_bucket{request="Produce"')) {
      await visible(page, '#chart-produce-latency[data-ready="true"] canvas', 30_000);
    }
    await shot(page, '07-charts.png');
    await bench;
    await reader;
  });

  let killed;
  await step('a SIGKILLed broker shows OFFLINE within 3 s and its partitions move', async () => {
    killed = await partitionLeader(0);
    await go(page, '#/');
    await visible(page, `#brokers tr[data-broker-id="${killed}"][data-status="ONLINE"]`);
    console.log(`@@ KILL_BROKER ${killed}`);
    const answer = await readLine();
    const m = /^KILLED (\d+)$/.exec(answer || '');
    if (!m) throw new Error(`unexpected answer from the test: ${answer}`);
    const killedAt = Number(m[1]);
    await visible(page, `#brokers tr[data-broker-id="${killed}"][data-status="OFFLINE"]`, 10_000);
    const shownMs = Date.now() - killedAt;
    console.log(`@@ OFFLINE_SHOWN_MS ${shownMs}`);
    log(`broker ${killed} shown OFFLINE ${shownMs} ms after its SIGKILL`);
    await shot(page, '08-broker-offline.png');
    if (shownMs > OFFLINE_SHOWN_MS_MAX) throw new Error(`OFFLINE shown after ${shownMs} ms (limit ${OFFLINE_SHOWN_MS_MAX})`);
    await go(page, `#/topics/${TOPIC}`);
    await page.waitForFunction(
      (id) => {
        const rows = [...document.querySelectorAll('#partitions tr[data-partition]')];
        return rows.length === 3 && rows.every((r) => Number(r.dataset.leader) >= 0 && r.dataset.leader !== String(id));
      },
      killed,
      { timeout: 15_000 },
    );
    await page.locator('#partitions', { hasText: 'under-replicated' }).waitFor();
    await shot(page, '09-leaders-moved.png');
  });

  await step('a phone-width screen: no sideways page scroll, tables scroll in their boxes', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const p = await phone.newPage();
    p.on('pageerror', (e) => pageErrors.push(e.message));
    await go(p, '#/');
    await visible(p, `#brokers tr[data-broker-id="${killed}"][data-status="OFFLINE"]`);
    const fits = () => p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
    if (!(await fits())) throw new Error('the overview is wider than a phone screen');
    await shot(p, '10-phone-overview.png');
    await go(p, `#/topics/${TOPIC}`);
    await count(p, '#partitions tr[data-partition]', 3);
    await p.selectOption('#message-browser select[name="limit"]', '10');
    await p.click('#message-browser button[type="submit"]');
    await visible(p, '#records tr[data-offset="0"]');
    if (!(await fits())) throw new Error('the topic page is wider than a phone screen');
    await shot(p, '11-phone-topic.png');
    await phone.close();
  });

  await step('errors are shown, never a blank page', async () => {
    await go(page, '#/topics/no-such-topic');
    await page.locator('.error', { hasText: 'does not exist' }).waitFor();
    await shot(page, '12-error.png');
  });

  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);
  log(`PASSED in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  log(`FAILED at "${current}": ${e.stack || e}`);
  try {
    await shot(page, `FAILED-${current.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
  } catch {
    // The failure itself is what matters.
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
