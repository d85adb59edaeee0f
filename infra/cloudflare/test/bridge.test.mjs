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

// The whole R2 path on loopback: the Worker forwards an R2 notification into
// moto's SQS, and the real `reelay route` (built by `cargo build`) reads the
// bucket through moto's S3, runs the job's steps and writes the export.
describe('R2 notification -> Worker -> SQS -> reelay route -> export', () => {
  const reelayBin = path.join(repo, 'target', 'debug', 'reelay');
  const ffmpeg = process.env.REELAY_FFMPEG || path.join(repo, '.tools', 'bin', 'ffmpeg');
  const font = process.env.REELAY_FONT || path.join(repo, '.tools', 'fonts', 'Roboto-Bold.ttf');
  const bucket = 'reelay-r2-route';
  let s3;
  let mf;
  let router;

  const s3Url = (key) => `${endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;

  after(async () => {
    if (router && router.exitCode === null) router.kill('SIGKILL');
    if (mf) await mf.dispose();
  });

  test('the export appears with its audit metadata, and route exits 0 on SIGTERM', { timeout: 180000 }, async () => {
    assert.ok(fs.existsSync(reelayBin), `${reelayBin} is missing: run \`cargo build --bin reelay\` first (make test does)`);
    assert.ok(fs.existsSync(ffmpeg), `${ffmpeg} is missing: run \`make setup\` first`);
    s3 = new AwsClient({ ...CREDS, region: REGION, service: 's3', retries: 0 });
    assert.equal((await s3.fetch(`${endpoint}/${bucket}`, { method: 'PUT' })).status, 200);

    // A 3 s 320x180 source with audio, made here by the project's FFmpeg.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-r2-route-'));
    const src = path.join(dir, 'match.mp4');
    const ff = spawnSync(ffmpeg, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:duration=3',
      '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', src]);
    assert.equal(ff.status, 0, String(ff.stderr));
    const put = async (key, body, type) => {
      const r = await s3.fetch(s3Url(key), { method: 'PUT', body, headers: { 'content-type': type } });
      assert.equal(r.status, 200, `PUT ${key}: ${await r.text()}`);
      return r.headers.get('etag').replaceAll('"', '');
    };
    await put('sources/r2 match.mp4', fs.readFileSync(src), 'video/mp4');
    const job = JSON.stringify({ version: 1, source: 'sources/r2 match.mp4', output: 'exports/r2.mp4', clips: [{ start: 0.5, end: 1.5 }, { start: 1.5, end: 2.5 }] });
    const etag = await put('jobs/r2.json', job, 'application/json');

    const events = (await sqsCall('CreateQueue', { QueueName: 'reelay-r2-route-events' })).QueueUrl;
    const gpu = (await sqsCall('CreateQueue', { QueueName: 'reelay-r2-route-gpu' })).QueueUrl;
    const script = buildWorker();
    mf = new Miniflare({
      modules: true,
      scriptPath: script,
      modulesRoot: path.dirname(script),
      cf: false,
      compatibilityDate: '2026-04-01',
      bindings: { SQS_QUEUE_URL: events, AWS_REGION: REGION, AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey },
      queueProducers: { R2_EVENTS: 'reelay-r2-route' },
      queueConsumers: { 'reelay-r2-route': { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 2 } },
    });
    const r2 = { ...notification('jobs/r2.json'), bucket, object: { key: 'jobs/r2.json', size: job.length, eTag: etag } };
    await (await mf.getQueueProducer('R2_EVENTS')).send(r2);

    const config = path.join(dir, 'reelay.toml');
    fs.writeFileSync(config, '[aws]\npoll_wait_seconds = 1\nshutdown_grace_seconds = 10\n');
    let log = '';
    router = spawn(reelayBin, ['route'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
        AWS_REGION: REGION,
        AWS_ENDPOINT_URL: endpoint,
        REELAY_BUCKET: `s3://${bucket}`,
        REELAY_EVENTS_QUEUE_URL: events,
        REELAY_GPU_QUEUE_URL: gpu,
        REELAY_S3_PATH_STYLE: 'true',
        REELAY_CONFIG: config,
        REELAY_FFMPEG: ffmpeg,
        REELAY_FONT: font,
        REELAY_LOG_FORMAT: 'text',
      },
    });
    router.stdout.on('data', (d) => (log = (log + d).slice(-8000)));
    router.stderr.on('data', (d) => (log = (log + d).slice(-8000)));
    const head = await waitFor(
      async () => {
        const r = await s3.fetch(s3Url('exports/r2.mp4'), { method: 'HEAD' });
        return r.status === 200 ? r : null;
      },
      { timeoutMs: 150000, stepMs: 500, what: `exports/r2.mp4 written by reelay route; its log:\n${log}` },
    ).catch((e) => assert.fail(`${e.message}\n${log}`));
    assert.equal(head.headers.get('x-amz-meta-reelay-kind'), 'compile');
    assert.ok(head.headers.get('x-amz-meta-reelay-job'), 'the export names its job');
    assert.ok(Number(head.headers.get('content-length')) > 1000, 'the export has content');

    const exited = new Promise((resolve) => router.on('exit', (code, signal) => resolve({ code, signal })));
    router.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null }, log);
  });
});
