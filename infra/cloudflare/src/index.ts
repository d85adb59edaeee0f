/**
 * R2 -> SQS bridge. R2 event notifications land in a Cloudflare Queue; this
 * consumer forwards each message body, unchanged, to reelay's SQS events
 * queue with SigV4-signed SendMessageBatch calls. reelay parses the R2 shape
 * `{account, action, bucket, object:{key,size,eTag}, eventTime, copySource?}`.
 *
 * A message is acked only after SQS accepted it; everything else is retried
 * by the Cloudflare Queue (retry_delay, max_retries, then dead_letter_queue).
 */
import { AwsClient } from 'aws4fetch';

export interface Env {
  /** reelay's events queue URL (stack output EventsQueueUrl). */
  SQS_QUEUE_URL: string;
  /** Region of the queue, e.g. us-east-1. */
  AWS_REGION: string;
  /** Secrets of an IAM principal allowed sqs:SendMessage on that queue only. */
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
}

/** SQS takes at most 10 entries per SendMessageBatch. */
const SQS_BATCH = 10;

interface BatchResult {
  Successful?: { Id: string }[];
  Failed?: { Id: string; Code?: string; Message?: string; SenderFault?: boolean }[];
}

export function sqsClient(env: Env): AwsClient {
  for (const k of ['SQS_QUEUE_URL', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) {
    if (!env[k]) throw new Error(`reelay-r2-bridge: ${k} is not set`);
  }
  return new AwsClient({
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    region: env.AWS_REGION,
    service: 'sqs',
    // aws4fetch retries 5xx and throttling with exponential backoff.
    retries: 3,
    initRetryMs: 100,
  });
}

function bodyText(body: unknown): string {
  // R2 notifications arrive as JSON objects; send them as the JSON text reelay parses.
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/** Forwards one chunk; returns the ids SQS did not accept (all of them on a transport error). */
async function sendChunk(aws: AwsClient, env: Env, msgs: readonly Message<unknown>[]): Promise<Set<string>> {
  const entries = msgs.map((m, i) => ({ Id: String(i), MessageBody: bodyText(m.body) }));
  const all = new Set(entries.map((e) => e.Id));
  let res: Response;
  try {
    // JSON protocol: POST to the endpoint that serves the queue URL.
    res = await aws.fetch(new URL('/', env.SQS_QUEUE_URL).toString(), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': 'AmazonSQS.SendMessageBatch',
      },
      body: JSON.stringify({ QueueUrl: env.SQS_QUEUE_URL, Entries: entries }),
    });
  } catch (err) {
    console.error(JSON.stringify({ msg: 'sqs request failed', error: String(err), count: msgs.length }));
    return all;
  }
  const text = await res.text();
  if (!res.ok) {
    console.error(JSON.stringify({ msg: 'sqs rejected batch', status: res.status, body: text.slice(0, 500), count: msgs.length }));
    return all;
  }
  const result = JSON.parse(text) as BatchResult;
  const failed = new Set((result.Failed ?? []).map((f) => f.Id));
  for (const f of result.Failed ?? []) {
    console.error(JSON.stringify({ msg: 'sqs rejected message', id: msgs[Number(f.Id)]?.id, code: f.Code, senderFault: f.SenderFault }));
  }
  // Anything neither confirmed nor reported failed is treated as failed.
  const ok = new Set((result.Successful ?? []).map((s) => s.Id));
  for (const id of all) if (!ok.has(id)) failed.add(id);
  return failed;
}

export async function forward(batch: MessageBatch<unknown>, env: Env): Promise<{ sent: number; retried: number }> {
  const aws = sqsClient(env);
  let sent = 0;
  let retried = 0;
  for (let i = 0; i < batch.messages.length; i += SQS_BATCH) {
    const chunk = batch.messages.slice(i, i + SQS_BATCH);
    const failed = await sendChunk(aws, env, chunk);
    chunk.forEach((m, j) => {
      if (failed.has(String(j))) {
        // Backoff grows with attempts; after max_retries the queue dead-letters it.
        m.retry({ delaySeconds: Math.min(300, 10 * 2 ** Math.min(m.attempts, 5)) });
        retried++;
      } else {
        m.ack();
        sent++;
      }
    });
  }
  return { sent, retried };
}

export default {
  async queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
    const { sent, retried } = await forward(batch, env);
    console.log(JSON.stringify({ msg: 'forwarded', queue: batch.queue, sent, retried }));
  },
} satisfies ExportedHandler<Env>;
