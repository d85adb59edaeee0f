// The calls moto cannot authorise (ECS task protection, CloudWatch Logs,
// Secrets Manager), evaluated against the statements the template gives each
// role, the same statements tests/iam_enforced.rs loads into moto. A call a
// role makes must be allowed; a permission no recorded call needs is listed
// (as a diagnostic) so an excess is visible.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Statement, rolePolicies } from '../scripts/role-policies';

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const sqsArn = (n: string) => `arn:aws:sqs:${REGION}:${ACCOUNT}:${n}`;
const target = {
  bucket: 'iam-media',
  account: ACCOUNT,
  region: REGION,
  cluster: 'reelay-cluster',
  queues: { EventsQueue: sqsArn('reelay-events'), GpuQueue: sqsArn('reelay-gpu'), EventsDlq: sqsArn('reelay-events-dlq'), GpuDlq: sqsArn('reelay-gpu-dlq') },
};

/** IAM's wildcard match: `*` any run, `?` one character. */
function glob(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('')}$`);
  return re.test(value);
}

/** Identity-policy evaluation: an explicit Deny wins, then any Allow. */
export function allowed(stmts: Statement[], action: string, resource: string): boolean {
  const hits = (s: Statement) => s.Action.some((a) => glob(a, action)) && s.Resource.some((r) => glob(r, resource)) && !s.Condition;
  if (stmts.some((s) => s.Effect === 'Deny' && hits(s))) return false;
  return stmts.some((s) => s.Effect === 'Allow' && hits(s));
}

type Call = [action: string, resource: string, why: string];
const task = `arn:aws:ecs:${REGION}:${ACCOUNT}:task/reelay-cluster/0f1e2d3c4b5a69788796a5b4c3d2e1f0`;
const secret = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:reelay-r2-keys-AbC123`;

/** Calls reelay (or AWS on its behalf, with the role) makes that moto does not authorise. */
const UNCHECKED: Record<string, Call[]> = {
  worker: [
    ['ecs:UpdateTaskProtection', task, 'the ECS agent sets and renews task protection with the task role while a message is held'],
    ['ecs:GetTaskProtection', task, 'the lease keeper reads the protection back'],
  ],
  lambda: [
    ['logs:CreateLogStream', `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/reelay/RouterLogsDF967322:log-stream:2026/01/01/[$LATEST]0123`, 'Lambda writes the function log with its role'],
    ['logs:PutLogEvents', `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/reelay/RouterLogsDF967322:log-stream:2026/01/01/[$LATEST]0123`, 'Lambda writes the function log with its role'],
  ],
  router: [],
};

/** Every call the S3+SQS run in tests/iam_enforced.rs makes (moto checks those): for the excess report. */
const CHECKED_BY_MOTO: Record<string, string[]> = {
  lambda: ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility'],
  worker: ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility'],
  router: ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility'],
};

const plain = rolePolicies(target);
const withR2 = rolePolicies({ ...target, r2KeysName: 'reelay-r2-keys' });

describe('calls moto does not authorise, against the template', () => {
  for (const role of Object.keys(UNCHECKED)) {
    test(`${role}: every unchecked call is allowed`, () => {
      for (const [action, resource, why] of UNCHECKED[role]) {
        assert.ok(allowed(plain[role], action, resource), `${role} may not ${action} on ${resource} (${why})`);
      }
    });
  }

  test('with R2, router, worker and Lambda may read exactly the keys secret', () => {
    for (const role of ['lambda', 'worker', 'router']) {
      assert.ok(allowed(withR2[role], 'secretsmanager:GetSecretValue', secret), role);
      assert.ok(!allowed(withR2[role], 'secretsmanager:GetSecretValue', secret.replace('reelay-r2-keys', 'other-secret')), role);
      assert.ok(!allowed(plain[role], 'secretsmanager:GetSecretValue', secret), `${role} without R2`);
    }
  });

  test('the evaluator can say no: a missing action or a wrong resource is denied', () => {
    assert.ok(!allowed(plain.worker, 'ecs:StopTask', task));
    assert.ok(!allowed(plain.worker, 'ecs:UpdateTaskProtection', task.replace('reelay-cluster', 'other-cluster')));
    assert.ok(!allowed(plain.worker, 's3:PutObject', 'arn:aws:s3:::iam-media/sources/x.mp4'));
    assert.ok(allowed(plain.worker, 's3:PutObject', 'arn:aws:s3:::iam-media/exports/x.mp4'));
  });

  test('excess: permissions no recorded call needs (a diagnostic, not a failure)', (t) => {
    for (const role of Object.keys(plain)) {
      const used = new Set([...CHECKED_BY_MOTO[role], ...UNCHECKED[role].map(([a]) => a)]);
      const excess = [...new Set(plain[role].flatMap((s) => s.Action))].filter((a) => !used.has(a)).sort();
      t.diagnostic(`${role}: granted but not exercised: ${excess.join(', ') || 'none'}`);
    }
  });
});
