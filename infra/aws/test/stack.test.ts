import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { UPLOAD_PREFIXES } from '../lib/reelay-stack';
import {
  asArray,
  byPath,
  containerEnvNames,
  envNamesFromRust,
  ofType,
  only,
  queueActions,
  render,
  roleStatements,
  s3Prefixes,
  synth,
} from './helpers';

const base = synth();
const R = base.resources;
const [bucketId, bucket] = byPath(R, 'Test/Bucket/Resource');
const [eventsQ] = byPath(R, 'Test/EventsQueue/Resource');
const [gpuQ] = byPath(R, 'Test/GpuQueue/Resource');
const [eventsDlqId] = byPath(R, 'Test/EventsDlq/Resource');
const [gpuDlqId] = byPath(R, 'Test/GpuDlq/Resource');
const [, routerFn] = only(R, 'AWS::Lambda::Function');
const [, esm] = only(R, 'AWS::Lambda::EventSourceMapping');
const [, workerTaskDef] = only(R, 'AWS::ECS::TaskDefinition');
const workerContainer = workerTaskDef.Properties.ContainerDefinitions[0];
const routerRoleId = routerFn.Properties.Role['Fn::GetAtt'][0];
const workerRoleId = workerTaskDef.Properties.TaskRoleArn['Fn::GetAtt'][0];

describe('bucket security', () => {
  test('blocks all public access', () => {
    assert.deepEqual(bucket.Properties.PublicAccessBlockConfiguration, {
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
  });

  test('encrypts at rest (SSE)', () => {
    const rules = bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration;
    assert.ok(rules.length >= 1);
    assert.match(rules[0].ServerSideEncryptionByDefault.SSEAlgorithm, /^(AES256|aws:kms|aws:kms:dsse)$/);
  });

  test('denies every non-TLS request in the bucket policy', () => {
    const [, policy] = only(R, 'AWS::S3::BucketPolicy', (p) => p.Properties.Bucket.Ref === bucketId);
    const deny = asArray<any>(policy.Properties.PolicyDocument.Statement).find(
      (s) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false',
    );
    assert.ok(deny, 'no Deny on aws:SecureTransport=false');
    assert.deepEqual(asArray(deny.Action), ['s3:*']);
    assert.equal(render(deny.Principal.AWS), '*');
    const res = asArray(deny.Resource).map(render);
    assert.ok(res.includes(`{${bucketId}.Arn}`) && res.includes(`{${bucketId}.Arn}/*`), `TLS deny must cover bucket and objects: ${res}`);
  });

  test('keeps versions, owner-enforced objects and access logs', () => {
    assert.equal(bucket.Properties.VersioningConfiguration.Status, 'Enabled');
    assert.deepEqual(bucket.Properties.OwnershipControls.Rules, [{ ObjectOwnership: 'BucketOwnerEnforced' }]);
    assert.ok(bucket.Properties.LoggingConfiguration.DestinationBucketName);
  });

  test('every bucket in the stack blocks public access and is encrypted', () => {
    for (const [id, b] of ofType(R, 'AWS::S3::Bucket')) {
      assert.equal(b.Properties.PublicAccessBlockConfiguration?.RestrictPublicBuckets, true, id);
      assert.ok(b.Properties.BucketEncryption, id);
    }
  });
});

describe('bucket notifications and lifecycle', () => {
  test('only the upload prefixes notify, and they notify the events queue', () => {
    const qc = bucket.Properties.NotificationConfiguration.QueueConfigurations;
    const prefixes = qc.map((c: any) => c.Filter.S3Key.Rules.find((r: any) => r.Name === 'prefix').Value).sort();
    assert.deepEqual(prefixes, [...UPLOAD_PREFIXES].sort());
    assert.deepEqual(prefixes, ['jobs/', 'sources/']);
    for (const c of qc) {
      assert.equal(c.Event, 's3:ObjectCreated:*');
      assert.equal(render(c.Queue), `{${eventsQ}.Arn}`);
    }
    assert.equal(bucket.Properties.NotificationConfiguration.LambdaConfigurations, undefined);
  });

  test('the events queue lets exactly this bucket send, and the bucket waits for that policy', () => {
    const [policyId, policy] = only(R, 'AWS::SQS::QueuePolicy', (p) => asArray(p.Properties.Queues).some((q: any) => q.Ref === eventsQ));
    const allow = asArray<any>(policy.Properties.PolicyDocument.Statement).find((s) => s.Effect === 'Allow');
    assert.equal(allow.Principal.Service, 's3.amazonaws.com');
    assert.deepEqual(asArray(allow.Action), ['sqs:SendMessage']);
    assert.match(render(allow.Condition.ArnEquals['aws:SourceArn']), /:s3:::/);
    assert.ok(asArray(bucket.DependsOn).includes(policyId), 'bucket must depend on the queue policy (S3 validates it)');
  });

  test('work/ expires after the configured days, and the rule can be turned off', () => {
    const rule = bucket.Properties.LifecycleConfiguration.Rules.find((r: any) => r.Prefix === 'work/');
    assert.ok(rule, 'no work/ rule');
    assert.equal(rule.ExpirationInDays, 14);
    assert.equal(rule.Status, 'Enabled');
    const none = synth({ workExpiryDays: 0 });
    const [, b] = byPath(none.resources, 'Test/Bucket/Resource');
    assert.ok(!b.Properties.LifecycleConfiguration.Rules.some((r: any) => r.Prefix === 'work/'));
    const seven = synth({ workExpiryDays: 7 });
    const [, b7] = byPath(seven.resources, 'Test/Bucket/Resource');
    assert.equal(b7.Properties.LifecycleConfiguration.Rules.find((r: any) => r.Prefix === 'work/').ExpirationInDays, 7);
  });
});

describe('queues and dead letters', () => {
  for (const [name, qId, dlqId, maxReceive] of [
    ['events', eventsQ, eventsDlqId, 5],
    ['gpu', gpuQ, gpuDlqId, 3],
  ] as const) {
    test(`${name} queue redrives to its DLQ after maxReceiveCount`, () => {
      const q = R[qId];
      assert.equal(q.Properties.RedrivePolicy.maxReceiveCount, maxReceive);
      assert.equal(render(q.Properties.RedrivePolicy.deadLetterTargetArn), `{${dlqId}.Arn}`);
      assert.equal(q.Properties.SqsManagedSseEnabled, true);
      assert.equal(R[dlqId].Properties.SqsManagedSseEnabled, true);
    });

    test(`${name} DLQ has a depth alarm wired to the alarm topic`, () => {
      const alarms = ofType(R, 'AWS::CloudWatch::Alarm').filter(([, a]) =>
        asArray(a.Properties.Dimensions).some((d: any) => d.Name === 'QueueName' && render(d.Value) === `{${dlqId}.QueueName}`),
      );
      assert.equal(alarms.length, 1);
      const a = alarms[0][1].Properties;
      assert.equal(a.MetricName, 'ApproximateNumberOfMessagesVisible');
      assert.equal(a.Namespace, 'AWS/SQS');
      assert.equal(a.Threshold, 1);
      assert.equal(a.ComparisonOperator, 'GreaterThanOrEqualToThreshold');
      assert.equal(asArray(a.AlarmActions).length, 1);
    });

    test(`${name} queues deny non-TLS access`, () => {
      for (const id of [qId, dlqId]) {
        const [, p] = only(R, 'AWS::SQS::QueuePolicy', (pp) => asArray(pp.Properties.Queues).some((x: any) => x.Ref === id));
        assert.ok(asArray<any>(p.Properties.PolicyDocument.Statement).some((s) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false'));
      }
    });
  }
});

describe('router Lambda', () => {
  test('is a provided.al2023 custom runtime with a bootstrap', () => {
    assert.equal(routerFn.Properties.Runtime, 'provided.al2023');
    assert.equal(routerFn.Properties.Handler, 'bootstrap');
    assert.ok(routerFn.Properties.Timeout > 0 && routerFn.Properties.MemorySize >= 1024);
  });

  test("reserves no concurrency (a new account's quota can be 10 with 100 kept unreserved); the event source bounds it", () => {
    assert.equal(routerFn.Properties.ReservedConcurrentExecutions, undefined);
    assert.equal(esm.Properties.ScalingConfig.MaximumConcurrency, 10);
  });

  test('consumes the events queue in batches with partial batch failures', () => {
    assert.equal(render(esm.Properties.EventSourceArn), `{${eventsQ}.Arn}`);
    assert.deepEqual(esm.Properties.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.ok(esm.Properties.BatchSize >= 1 && esm.Properties.BatchSize <= 10);
    assert.ok(esm.Properties.MaximumBatchingWindowInSeconds >= 1);
    assert.ok(esm.Properties.ScalingConfig.MaximumConcurrency >= 2);
  });

  for (const timeout of [600, 900, 60]) {
    test(`events queue visibility is at least 6x the function timeout (${timeout}s)`, () => {
      const s = timeout === 600 ? base : synth({ lambdaTimeoutSeconds: timeout });
      const [, fn] = only(s.resources, 'AWS::Lambda::Function');
      const [, q] = byPath(s.resources, 'Test/EventsQueue/Resource');
      assert.equal(fn.Properties.Timeout, timeout);
      assert.ok(q.Properties.VisibilityTimeout >= 6 * fn.Properties.Timeout, `${q.Properties.VisibilityTimeout} < 6 x ${fn.Properties.Timeout}`);
    });
  }

  test('refuses to synth without a bootstrap, and says how to fix it', () => {
    assert.throws(() => synth({ lambdaAsset: '/nonexistent/reelay-asset' }), /package-lambda\.sh.*REELAY_LAMBDA_ASSET/);
  });
});

describe('env var contract with src/config/env.rs', () => {
  const known = envNamesFromRust();
  const lambdaEnv = () => Object.keys(routerFn.Properties.Environment.Variables);

  test('env.rs parses into the names the binary reads', () => {
    for (const n of ['REELAY_BUCKET', 'REELAY_EVENTS_QUEUE_URL', 'REELAY_GPU_QUEUE_URL', 'REELAY_CONFIG']) assert.ok(known.has(n), n);
  });

  test('Lambda sets only variables the binary reads, and the required ones', () => {
    for (const n of lambdaEnv()) assert.ok(known.has(n), `Lambda sets ${n}, which src/config/env.rs does not declare`);
    for (const n of ['REELAY_BUCKET', 'REELAY_EVENTS_QUEUE_URL', 'REELAY_GPU_QUEUE_URL']) assert.ok(lambdaEnv().includes(n), n);
    const v = routerFn.Properties.Environment.Variables;
    assert.equal(render(v.REELAY_BUCKET), `if(UseR2,s3://{R2Bucket},s3://{${bucketId}})`);
    assert.equal(render(v.REELAY_EVENTS_QUEUE_URL), `{${eventsQ}}`);
    assert.equal(render(v.REELAY_GPU_QUEUE_URL), `{${gpuQ}}`);
    assert.equal(v.REELAY_FFMPEG, '/var/task/ffmpeg', 'the asset check makes sure it is there');
    assert.equal(v.REELAY_CONFIG, undefined, 'no reelay.toml in the asset, so no REELAY_CONFIG');
    assert.equal(v.REELAY_FONT, undefined, 'no font in the asset, so no REELAY_FONT');
  });

  test('worker sets only variables the binary reads, and the required ones', () => {
    const names = containerEnvNames(workerContainer);
    for (const n of names) assert.ok(known.has(n), `worker sets ${n}, which src/config/env.rs does not declare`);
    for (const n of ['REELAY_BUCKET', 'REELAY_EVENTS_QUEUE_URL', 'REELAY_GPU_QUEUE_URL']) assert.ok(names.includes(n), n);
    assert.equal(new Set(names).size, names.length, 'duplicate variable');
  });

  test('a shipped config, ffmpeg and font set REELAY_CONFIG, REELAY_FFMPEG and REELAY_FONT', () => {
    const s = synth({ containerConfigPath: '/etc/reelay/reelay.toml' }, ['reelay.toml', 'ffmpeg', 'fonts/Roboto-Bold.ttf']);
    const [, fn] = only(s.resources, 'AWS::Lambda::Function');
    const v = fn.Properties.Environment.Variables;
    assert.equal(v.REELAY_CONFIG, '/var/task/reelay.toml');
    assert.equal(v.REELAY_FFMPEG, '/var/task/ffmpeg');
    assert.equal(v.REELAY_FONT, '/var/task/fonts/Roboto-Bold.ttf');
    for (const n of Object.keys(v)) assert.ok(known.has(n), n);
    const [, td] = only(s.resources, 'AWS::ECS::TaskDefinition');
    const env = Object.fromEntries(td.Properties.ContainerDefinitions[0].Environment.map((e: any) => [e.Name, e.Value]));
    assert.equal(env.REELAY_CONFIG, '/etc/reelay/reelay.toml');
  });
});

describe('least-privilege IAM', () => {
  const all = Object.entries(R)
    .filter(([, r]) => ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy', 'AWS::IAM::Role'].includes(r.Type))
    .flatMap(([id, r]) => {
      const docs = r.Type === 'AWS::IAM::Role' ? asArray<any>(r.Properties.Policies).map((p) => p.PolicyDocument) : [r.Properties.PolicyDocument];
      return docs.flatMap((d) => asArray<any>(d.Statement).map((s) => ({ id, s })));
    });

  test('no wildcard actions for S3, SQS or anything', () => {
    for (const { id, s } of all) {
      for (const a of asArray<string>(s.Action)) {
        assert.notEqual(a, '*', `${id}: Action "*"`);
        assert.ok(!/^(s3|sqs|iam|ecs|kms):\*$/.test(a), `${id}: ${a}`);
      }
    }
  });

  test('no S3 or SQS permission on Resource "*"', () => {
    for (const { id, s } of all) {
      const touches = asArray<string>(s.Action).some((a) => a.startsWith('s3:') || a.startsWith('sqs:'));
      if (touches) assert.ok(!asArray(s.Resource).map(render).includes('*'), `${id}: ${JSON.stringify(s.Action)} on *`);
    }
  });

  test('router: reads uploads and its artifacts, writes work/ exports/ _reelay/', () => {
    const st = roleStatements(R, routerRoleId);
    assert.deepEqual(s3Prefixes(st, 's3:GetObject', bucketId), ['_reelay/*', 'detections/*', 'exports/*', 'jobs/*', 'sources/*', 'work/*']);
    assert.deepEqual(s3Prefixes(st, 's3:PutObject', bucketId), ['_reelay/*', 'detections/*', 'exports/*', 'work/*']);
    assert.ok(!s3Prefixes(st, 's3:PutObject', bucketId).some((p) => p.startsWith('sources/') || p.startsWith('jobs/')), 'router must not overwrite uploads');
    assert.deepEqual(s3Prefixes(st, 's3:DeleteObject', bucketId), ['_reelay/claims/*'], 'only claims are ever deleted');
  });

  test('router: sends to gpu and events, consumes events', () => {
    const st = roleStatements(R, routerRoleId);
    assert.ok(queueActions(st, gpuQ).includes('sqs:SendMessage'));
    assert.ok(!queueActions(st, gpuQ).includes('sqs:ReceiveMessage'), 'router must not consume gpu tasks');
    const ev = queueActions(st, eventsQ);
    for (const a of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:SendMessage']) assert.ok(ev.includes(a), a);
  });

  test('worker: reads (HEADs) every prefix it writes, so a redelivered export finds its output', () => {
    const st = roleStatements(R, workerRoleId);
    assert.deepEqual(s3Prefixes(st, 's3:GetObject', bucketId), ['_reelay/*', 'detections/*', 'exports/*', 'jobs/*', 'sources/*', 'work/*']);
    assert.deepEqual(s3Prefixes(st, 's3:PutObject', bucketId), ['_reelay/*', 'detections/*', 'exports/*', 'work/*']);
    for (const p of s3Prefixes(st, 's3:PutObject', bucketId)) assert.ok(s3Prefixes(st, 's3:GetObject', bucketId).includes(p), `writes ${p} but cannot HEAD it`);
  });

  test('worker: releases (deletes) its claims, and deletes nothing else', () => {
    const st = roleStatements(R, workerRoleId);
    assert.deepEqual(s3Prefixes(st, 's3:DeleteObject', bucketId), ['_reelay/claims/*']);
  });

  test('worker: receives, deletes, extends on gpu; only sends to events', () => {
    const st = roleStatements(R, workerRoleId);
    const g = queueActions(st, gpuQ);
    for (const a of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:SendMessage']) assert.ok(g.includes(a), a);
    assert.deepEqual(queueActions(st, eventsQ), ['sqs:SendMessage']);
  });

  test('worker may set and read its own task scale-in protection, in this cluster only', () => {
    const st = roleStatements(R, workerRoleId).filter((s) => s.Action.some((a) => a.startsWith('ecs:')));
    const acts = st.flatMap((s) => s.Action).sort();
    assert.deepEqual(acts, ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection']);
    for (const s of st) {
      for (const r of s.Resource) assert.match(r, /:task\/\{Cluster[0-9A-F]+\}\/\*$/, r);
    }
  });
});

describe('GPU fleet and scaling', () => {
  test('ECS GPU-optimised AMI on g4dn.xlarge through a capacity provider', () => {
    const [, lt] = only(R, 'AWS::EC2::LaunchTemplate');
    const d = lt.Properties.LaunchTemplateData;
    const [, fleet] = only(R, 'AWS::AutoScaling::AutoScalingGroup');
    const overrides = fleet.Properties.MixedInstancesPolicy.LaunchTemplate.Overrides.map((o: any) => o.InstanceType);
    assert.deepEqual(overrides, ['g4dn.xlarge']);
    assert.match(JSON.stringify(base.json.Parameters), /ecs\/optimized-ami\/amazon-linux-2023\/gpu/);
    assert.equal(d.MetadataOptions.HttpTokens, 'required');
    assert.ok(d.BlockDeviceMappings.every((b: any) => b.Ebs.Encrypted === true));
    const [, cp] = only(R, 'AWS::ECS::CapacityProvider');
    assert.equal(cp.Properties.AutoScalingGroupProvider.ManagedScaling.Status, 'ENABLED');
    assert.equal(cp.Properties.AutoScalingGroupProvider.ManagedTerminationProtection, 'ENABLED');
    const [, asg] = only(R, 'AWS::AutoScaling::AutoScalingGroup');
    assert.equal(asg.Properties.MinSize, '0');
    assert.equal(render(asg.Properties.MaxSize), '{MaxFleetSize}');
    assert.equal(asg.Properties.NewInstancesProtectedFromScaleIn, true);
    const [, svc] = only(R, 'AWS::ECS::Service');
    assert.equal(svc.Properties.CapacityProviderStrategy.length, 1);
  });

  test('the worker task asks for one GPU and runs `reelay work --device cuda`', () => {
    assert.deepEqual(workerContainer.ResourceRequirements, [{ Type: 'GPU', Value: '1' }]);
    assert.deepEqual(workerContainer.Command, ['work', '--device', 'cuda']);
    assert.deepEqual(workerContainer.HealthCheck.Command, ['CMD', '/opt/reelay/bin/reelay', 'doctor', '--quick', '--device', 'cuda']);
    assert.equal(workerContainer.ReadonlyRootFilesystem, true);
    assert.deepEqual(base.json.Resources[workerRoleId].Properties.AssumeRolePolicyDocument.Statement[0].Principal, { Service: 'ecs-tasks.amazonaws.com' });
  });

  test('service scales between 0 and the fleet size', () => {
    const [, t] = only(R, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(t.Properties.MinCapacity, 0);
    assert.equal(render(t.Properties.MaxCapacity), '{MaxFleetSize}');
    assert.equal(t.Properties.ScalableDimension, 'ecs:service:DesiredCount');
  });

  test('target tracking on gpu backlog per running task, fast out, slow in', () => {
    const [, p] = only(R, 'AWS::ApplicationAutoScaling::ScalingPolicy', (x) => x.Properties.PolicyType === 'TargetTrackingScaling');
    const c = p.Properties.TargetTrackingScalingPolicyConfiguration;
    const m = c.CustomizedMetricSpecification.Metrics;
    const visible = m.find((q: any) => q.MetricStat?.Metric.MetricName === 'ApproximateNumberOfMessagesVisible');
    const tasks = m.find((q: any) => q.MetricStat?.Metric.MetricName === 'RunningTaskCount');
    assert.ok(visible && tasks);
    assert.equal(render(visible.MetricStat.Metric.Dimensions[0].Value), `{${gpuQ}.QueueName}`);
    const expr = m.find((q: any) => q.ReturnData === true);
    assert.ok(expr.Expression.includes(`${visible.Id} / `) && expr.Expression.includes(tasks.Id), expr.Expression);
    assert.ok(c.ScaleOutCooldown <= 60 && c.ScaleOutCooldown < c.ScaleInCooldown);
    assert.notEqual(c.DisableScaleIn, true, 'must scale in to zero');
    const [, cluster] = only(R, 'AWS::ECS::Cluster');
    assert.ok(JSON.stringify(cluster.Properties.ClusterSettings).includes('containerInsights'), 'RunningTaskCount needs Container Insights');
  });

  test('a step policy wakes the service from zero when gpu work arrives', () => {
    const [pid, p] = only(R, 'AWS::ApplicationAutoScaling::ScalingPolicy', (x) => x.Properties.PolicyType === 'StepScaling');
    const cfg = p.Properties.StepScalingPolicyConfiguration;
    // Exactly one task, however long the alarm stays on: never the whole fleet for one message.
    assert.equal(cfg.AdjustmentType, 'ExactCapacity');
    assert.ok(cfg.StepAdjustments.every((s: any) => s.ScalingAdjustment === 1), JSON.stringify(cfg.StepAdjustments));
    const [, alarm] = only(R, 'AWS::CloudWatch::Alarm', (a) => asArray(a.Properties.AlarmActions).some((x: any) => x.Ref === pid));
    const exprs = alarm.Properties.Metrics.filter((q: any) => q.Expression).map((q: any) => q.Expression);
    assert.ok(exprs.some((e: string) => /IF\(FILL\(desired, 0\) < 1, visible, 0\)/.test(e)), exprs.join());
    const desired = alarm.Properties.Metrics.find((q: any) => q.Id === 'desired');
    assert.equal(desired.MetricStat.Metric.MetricName, 'DesiredTaskCount', 'wakes only while no task is wanted, not while one boots');
    assert.equal(alarm.Properties.Threshold, 1);
    const steps = ofType(R, 'AWS::ApplicationAutoScaling::ScalingPolicy').filter(([, x]) => x.Properties.PolicyType === 'StepScaling');
    assert.equal(steps.length, 1, 'no lower (scale-to-0) step on the wake alarm');
  });
});

describe('operations', () => {
  test('every log group has a retention', () => {
    const groups = ofType(R, 'AWS::Logs::LogGroup');
    assert.ok(groups.length >= 3);
    for (const [id, g] of groups) assert.equal(g.Properties.RetentionInDays, 30, id);
  });

  test('parameters an operator tunes exist', () => {
    for (const p of ['BucketName', 'DevicePrices', 'ModelsDir', 'MaxFleetSize', 'ImageTag', 'AlarmEmail', 'BacklogPerTask']) assert.ok(base.json.Parameters[p], p);
    const v = routerFn.Properties.Environment.Variables;
    assert.equal(render(v.REELAY_PRICES), '{DevicePrices}');
  });

  test('outputs say where to upload and what to watch', () => {
    for (const o of ['Bucket', 'EventsQueueUrl', 'GpuQueueUrl', 'EventsDlqUrl', 'GpuDlqUrl', 'RouterFunctionName', 'WorkerRepositoryUri', 'ClusterName']) {
      assert.ok(base.json.Outputs[o], o);
    }
  });

  test('synth is offline: no context lookups, no account-specific values', () => {
    base.template.templateMatches({ Resources: Match.anyValue() });
    assert.doesNotMatch(JSON.stringify(base.json), /\b\d{12}\b/);
  });
});

describe('router as a Fargate service (-c router=fargate)', () => {
  const f = synth({ router: 'fargate' });
  const FR = f.resources;

  test('replaces the Lambda with `reelay route` on Fargate', () => {
    assert.equal(ofType(FR, 'AWS::Lambda::Function').length, 0);
    assert.equal(ofType(FR, 'AWS::Lambda::EventSourceMapping').length, 0);
    const [, td] = only(FR, 'AWS::ECS::TaskDefinition', (t) => asArray(t.Properties.RequiresCompatibilities).includes('FARGATE'));
    const c = td.Properties.ContainerDefinitions.find((x: any) => x.Name === 'router');
    assert.deepEqual(c.Command, ['route']);
    const known = envNamesFromRust();
    for (const n of containerEnvNames(c)) assert.ok(known.has(n), n);
    const roleId = td.Properties.TaskRoleArn['Fn::GetAtt'][0];
    const [fEvents] = byPath(FR, 'Test/EventsQueue/Resource');
    assert.ok(queueActions(roleStatements(FR, roleId), fEvents).includes('sqs:ReceiveMessage'));
  });
});

describe('R2 bridge identity (-c r2Bridge=true)', () => {
  test('absent by default', () => {
    assert.equal(ofType(R, 'AWS::IAM::User').length, 0);
  });

  test('may only send to the events queue', () => {
    const s = synth({ r2Bridge: 'true' });
    const [userId, user] = only(s.resources, 'AWS::IAM::User');
    assert.equal(user.Properties.Policies, undefined, 'no inline user policies');
    const groupId = user.Properties.Groups[0].Ref;
    const stmts = ofType(s.resources, 'AWS::IAM::Policy')
      .filter(([, p]) => asArray(p.Properties.Groups).some((g: any) => g.Ref === groupId))
      .flatMap(([, p]) => asArray<any>(p.Properties.PolicyDocument.Statement));
    assert.equal(stmts.length, 1);
    assert.deepEqual(asArray(stmts[0].Action), ['sqs:SendMessage']);
    const [ev] = byPath(s.resources, 'Test/EventsQueue/Resource');
    assert.deepEqual(asArray(stmts[0].Resource).map(render), [`{${ev}.Arn}`]);
    assert.ok(s.json.Outputs.R2BridgeUserName.Value.Ref === userId);
  });
});
