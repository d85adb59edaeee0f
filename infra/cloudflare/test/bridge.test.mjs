// End to end on loopback: R2-shaped notification -> Cloudflare Queue (miniflare)
// -> this Worker -> SigV4 SendMessageBatch -> SQS served by moto_server.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AwsClient } from 'aws4fetch';
import { Miniflare } from 'miniflare';

const here = path.dirname(fileURLToPath(import.meta.url));
const project = path.resolve(here, '..');
const repo = path.resolve(project, '..', '..');
const motoBin = process.env.MOTO_SERVER || path.join(repo, '.tools', 'infra-venv', 'bin', 'moto_server');
const REGION = 'us-east-1';
const CREDS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

const notification = (key) => ({
  account: '3f4a9c0d2b7e4e1a8c6d5b2a1f0e9d8c',
  action: 'PutObject',
  bucket: 'reelay-media',
  object: { key, size: 1048576, eTag: 'b1946ac92492d2347c6235b4d2611184' },
  eventTime: '2026-11-26T18:00:00.000Z',
});

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(fn, { timeoutMs = 20000, stepMs = 200, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

let moto;
let endpoint;
let sqs;

async function sqsCall(target, body) {
  const res = await sqs.fetch(`${endpoint}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AmazonSQS.${target}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${target}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function receiveAll(queueUrl, want, timeoutMs = 20000) {
  const got = [];
  await waitFor(
    async () => {
      const r = await sqsCall('ReceiveMessage', { QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 });
      for (const m of r.Messages ?? []) {
        got.push(m);
        await sqsCall('DeleteMessage', { QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle });
      }
      return got.length >= want;
    },
    { timeoutMs, what: `${want} message(s) in ${queueUrl}` },
  );
  return got;
}

/** The exact bundle `wrangler deploy` would upload. */
function buildWorker() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-bridge-'));
  const r = spawnSync(path.join(project, 'node_modules', '.bin', 'wrangler'), ['deploy', '--dry-run', '--outdir', out], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
  });
  assert.equal(r.status, 0, `wrangler deploy --dry-run failed:\n${r.stdout}\n${r.stderr}`);
  const script = path.join(out, 'index.js');
  assert.ok(fs.existsSync(script), 'wrangler produced no index.js');
  return script;
}

before(async () => {
  const port = await freePort();
  endpoint = `http://127.0.0.1:${port}`;
  moto = spawn(motoBin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  moto.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  moto.on('exit', (code) => {
    if (code !== null && code !== 0) console.error(`moto_server exited ${code}: ${stderr}`);
  });
  sqs = new AwsClient({ ...CREDS, region: REGION, service: 'sqs', retries: 0 });
  await waitFor(async () => (await fetch(`${endpoint}/moto-api/`)).ok, { what: `moto_server on ${endpoint}` });
});

after(() => {
  if (moto && moto.exitCode === null) moto.kill('SIGTERM');
});

describe('R2 -> Cloudflare Queue -> Worker -> SQS (miniflare + moto)', () => {
  let mf;
  let queueUrl;
  let script;

  before(async () => {
    script = buildWorker();
    queueUrl = (await sqsCall('CreateQueue', { QueueName: 'reelay-events' })).QueueUrl;
    assert.match(queueUrl, /^http:\/\/127\.0\.0\.1:\d+\//);
  });

  after(async () => {
    if (mf) await mf.dispose();
  });

  test('an R2 PutObject notification arrives in the SQS events queue unchanged', async () => {
    mf = new Miniflare({
      modules: true,
      scriptPath: script,
      modulesRoot: path.dirname(script), // workerd rejects module names with '..'
      cf: false, // no download of the Request.cf object
      compatibilityDate: '2026-04-01',
      bindings: { SQS_QUEUE_URL: queueUrl, AWS_REGION: REGION, AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey },
      queueProducers: { R2_EVENTS: 'reelay-r2-events' },
      queueConsumers: { 'reelay-r2-events': { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 2 } },
    });
    const producer = await mf.getQueueProducer('R2_EVENTS');
    const sent = [notification('sources/match one.mp4'), notification('jobs/export-1.json')];
    await producer.sendBatch(sent.map((body) => ({ body })));
    const got = await receiveAll(queueUrl, 2);
    const bodies = got.map((m) => JSON.parse(m.Body)).sort((a, b) => a.object.key.localeCompare(b.object.key));
    assert.deepEqual(bodies, [...sent].sort((a, b) => a.object.key.localeCompare(b.object.key)));
    assert.equal(got.length, 2, 'each notification is forwarded once');
  });
});

describe('failure handling (the Worker module called directly)', () => {
  let worker;
  let queueUrl;

  before(async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-bridge-node-'));
    const r = spawnSync(
      path.join(project, 'node_modules', '.bin', 'esbuild'),
      ['src/index.ts', '--bundle', '--format=esm', '--platform=neutral', `--outfile=${path.join(out, 'worker.mjs')}`],
      { cwd: project, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    worker = await import(path.join(out, 'worker.mjs'));
    queueUrl = (await sqsCall('CreateQueue', { QueueName: 'reelay-events-direct' })).QueueUrl;
  });

  const fakeBatch = (bodies) => {
    const calls = [];
    const messages = bodies.map((body, i) => ({
      id: `m${i}`,
      body,
      attempts: 1,
      timestamp: new Date(),
      ack: () => calls.push(['ack', i]),
      retry: (o) => calls.push(['retry', i, o]),
    }));
    return { batch: { queue: 'reelay-r2-events', messages, ackAll() {}, retryAll() {} }, calls };
  };
  const env = (url) => ({ SQS_QUEUE_URL: url, AWS_REGION: REGION, AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey });

  test('acks every message SQS accepted, in chunks of 10', async () => {
    const bodies = Array.from({ length: 13 }, (_, i) => notification(`sources/clip-${i}.mp4`));
    const { batch, calls } = fakeBatch(bodies);
    const r = await worker.forward(batch, env(queueUrl));
    assert.deepEqual(r, { sent: 13, retried: 0 });
    assert.equal(calls.filter((c) => c[0] === 'ack').length, 13);
    assert.equal((await receiveAll(queueUrl, 13)).length, 13);
  });

  test('retries (never acks) when SQS rejects the request', async () => {
    const missing = queueUrl.replace(/reelay-events-direct$/, 'no-such-queue');
    const { batch, calls } = fakeBatch([notification('sources/a.mp4'), notification('sources/b.mp4')]);
    const r = await worker.forward(batch, env(missing));
    assert.deepEqual(r, { sent: 0, retried: 2 });
    assert.ok(calls.every((c) => c[0] === 'retry' && c[2].delaySeconds > 0), JSON.stringify(calls));
  });

  test('retries when the SQS endpoint is unreachable', async () => {
    const dead = `http://127.0.0.1:${await freePort()}/123456789012/reelay-events`;
    const { batch, calls } = fakeBatch([notification('sources/c.mp4')]);
    const r = await worker.forward(batch, env(dead));
    assert.deepEqual(r, { sent: 0, retried: 1 });
    assert.equal(calls[0][0], 'retry');
  });

  test('refuses to run unconfigured', async () => {
    const { batch } = fakeBatch([notification('sources/d.mp4')]);
    await assert.rejects(worker.forward(batch, { ...env(queueUrl), AWS_SECRET_ACCESS_KEY: '' }), /AWS_SECRET_ACCESS_KEY is not set/);
  });
});
