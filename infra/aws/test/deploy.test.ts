// What `cdk deploy` on a fresh account needs (issue 16): each test here fails
// on the stack as it was before that fix.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { LAMBDA_UNZIPPED_LIMIT, checkLambdaAsset, placeholderElf, readElf } from '../lib/lambda-asset';
import { REELAY_METRICS } from '../lib/observability';
import { LAMBDA_FONT, REPO_ROOT } from '../lib/settings';
import { asArray, byPath, fakeAsset, ofType, only, render, roleStatements, s3Prefixes, synth } from './helpers';

const base = synth();
const R = base.resources;
const [bucketId] = byPath(R, 'Test/Bucket/Resource');
const [eventsQ, eventsQueue] = byPath(R, 'Test/EventsQueue/Resource');
const [gpuQ, gpuQueue] = byPath(R, 'Test/GpuQueue/Resource');
const [, routerFn] = only(R, 'AWS::Lambda::Function');
const [, workerTd] = only(R, 'AWS::ECS::TaskDefinition');
const workerEnv = Object.fromEntries(workerTd.Properties.ContainerDefinitions[0].Environment.map((e: any) => [e.Name, e.Value]));
const lambdaEnv = routerFn.Properties.Environment.Variables;
const alarms = ofType(R, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);

function objdumpGlibc(file: string): string | undefined {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const v = [...out.matchAll(/GLIBC_(\d+(?:\.\d+)*)/g)].map((m) => m[1]);
  v.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return v[v.length - 1];
}
const hasObjdump = (() => {
  try {
    execFileSync('objdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('item 1: the Lambda asset is checked at synth', () => {
  test('an asset of 262,144,000 bytes or more is refused, with the fix', () => {
    const dir = fakeAsset();
    fs.writeFileSync(path.join(dir, 'padding'), '');
    fs.truncateSync(path.join(dir, 'padding'), LAMBDA_UNZIPPED_LIMIT); // sparse: counts, costs no disk
    assert.throws(() => synth({ lambdaAsset: dir }), /over Lambda's 262144000.*strip/);
    fs.truncateSync(path.join(dir, 'padding'), LAMBDA_UNZIPPED_LIMIT - 4096);
    assert.doesNotThrow(() => synth({ lambdaAsset: dir }));
  });

  test('no ffmpeg, or an ffmpeg for the other architecture, is refused (arm64 used to synth without one)', () => {
    const noFfmpeg = fakeAsset([], 'arm64');
    fs.rmSync(path.join(noFfmpeg, 'ffmpeg'));
    assert.throws(() => synth({ lambdaAsset: noFfmpeg, lambdaArch: 'arm64' }), /no ffmpeg.*CPU step/);
    const x86 = fakeAsset([], 'x86_64');
    fs.writeFileSync(path.join(x86, 'bootstrap'), placeholderElf('arm64', '2.34'));
    assert.throws(() => synth({ lambdaAsset: x86, lambdaArch: 'arm64' }), /ffmpeg is built for x86_64 but the function runs on arm64/);
    assert.doesNotThrow(() => synth({ lambdaAsset: fakeAsset([], 'arm64'), lambdaArch: 'arm64' }));
  });

  test('a bootstrap that needs a glibc newer than 2.34 (provided.al2023) is refused', () => {
    const dir = fakeAsset();
    fs.writeFileSync(path.join(dir, 'bootstrap'), placeholderElf('x86_64', '2.35'));
    assert.throws(() => synth({ lambdaAsset: dir }), /needs GLIBC_2\.35 but provided\.al2023 has 2\.34.*zigbuild/);
    fs.writeFileSync(path.join(dir, 'bootstrap'), '#!/bin/sh\nexit 1\n');
    assert.throws(() => synth({ lambdaAsset: dir }), /not a 64-bit ELF/);
  });

  test('the ELF reader agrees with objdump on real binaries', { skip: !hasObjdump && 'objdump not installed' }, () => {
    const candidates = [path.join(REPO_ROOT, '.tools', 'bin', 'ffmpeg'), '/bin/ls', '/usr/bin/bash', process.execPath];
    let checked = 0;
    for (const f of candidates.filter((c) => fs.existsSync(c))) {
      assert.equal(readElf(f)?.maxGlibc, objdumpGlibc(f), f);
      checked++;
    }
    assert.ok(checked >= 2, 'no real binaries to compare with');
  });

  test('package-lambda.sh strips the bootstrap, fetches the FFmpeg of the architecture and runs the same check', () => {
    const script = fs.readFileSync(path.join(REPO_ROOT, 'infra', 'aws', 'scripts', 'package-lambda.sh'), 'utf8');
    assert.match(script, /CARGO_PROFILE_RELEASE_STRIP=symbols/);
    assert.match(script, /manylinux_2_28_aarch64|manylinux2014_aarch64/);
    assert.match(script, /check-lambda-asset\.ts/);
    const font = checkLambdaAsset(fakeAsset([LAMBDA_FONT]), 'x86_64', LAMBDA_FONT);
    assert.equal(font.font, true);
  });
});

describe('item 3: worker IAM for exports/ and claims; output prefixes held once', () => {
  test('REELAY_OUTPUT_PREFIXES is the same list everywhere and is exactly the IAM write scope', () => {
    const st = roleStatements(R, workerTd.Properties.TaskRoleArn['Fn::GetAtt'][0]);
    const expected = 'exports/,detections/';
    assert.equal(lambdaEnv.REELAY_OUTPUT_PREFIXES, expected);
    assert.equal(workerEnv.REELAY_OUTPUT_PREFIXES, expected);
    const writes = s3Prefixes(st, 's3:PutObject', bucketId).filter((p) => p !== 'work/*' && p !== '_reelay/*');
    assert.deepEqual(writes.sort(), expected.split(',').map((p) => `${p}*`).sort());
  });

  test('-c outputPrefixes changes the variable and the IAM scope together', () => {
    const s = synth({ outputPrefixes: 'exports/,thumbs/' });
    const [, td] = only(s.resources, 'AWS::ECS::TaskDefinition');
    const env = Object.fromEntries(td.Properties.ContainerDefinitions[0].Environment.map((e: any) => [e.Name, e.Value]));
    assert.equal(env.REELAY_OUTPUT_PREFIXES, 'exports/,thumbs/');
    const [bid] = byPath(s.resources, 'Test/Bucket/Resource');
    const st = roleStatements(s.resources, td.Properties.TaskRoleArn['Fn::GetAtt'][0]);
    assert.deepEqual(s3Prefixes(st, 's3:PutObject', bid), ['_reelay/*', 'exports/*', 'thumbs/*', 'work/*']);
    assert.throws(() => synth({ outputPrefixes: 'sources/' }), /reserved/);
    assert.throws(() => synth({ outputPrefixes: 'exports' }), /not a top-level prefix/);
  });
});

describe('item 4: alarm email can be delivered', () => {
  test('the alarm topic uses a customer-managed key whose policy lets CloudWatch use it', () => {
    const [, topic] = only(R, 'AWS::SNS::Topic');
    const keyRef = topic.Properties.KmsMasterKeyId;
    assert.ok(keyRef['Fn::GetAtt'], `not the stack's own key: ${JSON.stringify(keyRef)}`);
    assert.doesNotMatch(JSON.stringify(keyRef), /alias\/aws\/sns/);
    const key = R[keyRef['Fn::GetAtt'][0]];
    assert.equal(key.Type, 'AWS::KMS::Key');
    assert.equal(key.Properties.EnableKeyRotation, true);
    const cw = asArray<any>(key.Properties.KeyPolicy.Statement).find((s) => s.Principal?.Service === 'cloudwatch.amazonaws.com');
    assert.ok(cw, 'no key policy statement for cloudwatch.amazonaws.com');
    assert.deepEqual(asArray(cw.Action).sort(), ['kms:Decrypt', 'kms:GenerateDataKey*']);
    const [, tp] = only(R, 'AWS::SNS::TopicPolicy');
    assert.ok(asArray<any>(tp.Properties.PolicyDocument.Statement).some((s) => s.Effect === 'Allow' && s.Principal?.Service === 'cloudwatch.amazonaws.com'));
  });
});

describe('item 5 and operations: stalls, errors and reelay outcomes alarm; a dashboard shows them', () => {
  const topicRef = (a: any) => asArray(a.AlarmActions).some((x: any) => x.Ref && R[x.Ref]?.Type === 'AWS::SNS::Topic');

  test('a gpu message not received alarms on ApproximateAgeOfOldestMessage', () => {
    const a = alarms.find((x) => x.MetricName === 'ApproximateAgeOfOldestMessage' && render(x.Dimensions[0].Value) === `{${gpuQ}.QueueName}`);
    assert.ok(a, 'no age alarm on the gpu queue');
    assert.ok(a.Threshold >= 900 && a.Threshold < 4 * 86400, String(a.Threshold));
    assert.ok(topicRef(a));
    assert.ok(alarms.some((x) => x.MetricName === 'ApproximateAgeOfOldestMessage' && render(x.Dimensions[0].Value) === `{${eventsQ}.QueueName}`));
  });

  test('worker tasks wanted but not running for 15 minutes alarm (quota 0, missing image)', () => {
    const a = alarms.find((x) => asArray(x.Metrics).some((m: any) => m.Expression === 'FILL(desired, 0) - FILL(running, 0)'));
    assert.ok(a);
    assert.equal(a.EvaluationPeriods * a.Metrics.find((m: any) => m.Id === 'desired').MetricStat.Period, 900);
    assert.ok(topicRef(a));
  });

  test('the router Lambda alarms on errors and throttles', () => {
    for (const m of ['Errors', 'Throttles']) {
      const a = alarms.find((x) => x.MetricName === m && x.Namespace === 'AWS/Lambda');
      assert.ok(a && topicRef(a), m);
    }
  });

  test("reelay's own EMF metrics: dead-lettered and failed tasks alarm", () => {
    for (const outcome of ['dead_lettered', 'failed']) {
      const a = alarms.find((x) => x.Namespace === REELAY_METRICS.namespace && x.MetricName === 'tasks' && x.Dimensions?.[0]?.Value === outcome);
      assert.ok(a, outcome);
      assert.deepEqual(a.Dimensions, [{ Name: 'outcome', Value: outcome }], 'must match the ["outcome"] dimension set exactly');
      assert.equal(a.Statistic, 'Sum');
      assert.ok(topicRef(a));
    }
    assert.equal(REELAY_METRICS.namespace, 'reelay');
    assert.deepEqual(REELAY_METRICS.dimensionSets, [['kind', 'device', 'outcome'], ['outcome']]);
  });

  test('one dashboard graphs reelay outcomes, timings, cost, queues and the services', () => {
    const [, d] = only(R, 'AWS::CloudWatch::Dashboard');
    const body = render(d.Properties.DashboardBody);
    for (const o of REELAY_METRICS.outcomes) assert.ok(body.includes(`"outcome","${o}"`), o);
    for (const m of ['task_ms', 'queue_to_start_ms', 'cost_usd']) assert.ok(body.includes(`MetricName=\\"${m}\\"`), m);
    assert.ok(body.includes('{reelay,kind,device,outcome}'));
    assert.ok(body.includes('ApproximateAgeOfOldestMessage') && body.includes('DesiredTaskCount'));
  });

  test('cost-allocation tags on what bills', () => {
    for (const type of ['AWS::S3::Bucket', 'AWS::SQS::Queue', 'AWS::ECS::Cluster', 'AWS::Lambda::Function']) {
      for (const [id, r] of ofType(R, type)) {
        assert.ok(asArray<any>(r.Properties.Tags).some((t) => t.Key === 'reelay:app' && t.Value === 'reelay'), `${type} ${id}`);
      }
    }
    const [, asg] = only(R, 'AWS::AutoScaling::AutoScalingGroup');
    assert.ok(asg.Properties.Tags.some((t: any) => t.Key === 'reelay:app' && t.PropagateAtLaunch === true), 'instances carry the tag');
  });
});

describe("reelay's failure records agree with the queues", () => {
  test('each consumer gets its own queue visibility and maxReceiveCount', () => {
    assert.equal(lambdaEnv.REELAY_QUEUE_VISIBILITY_SECONDS, String(eventsQueue.Properties.VisibilityTimeout));
    assert.equal(lambdaEnv.REELAY_QUEUE_MAX_RECEIVE_COUNT, String(eventsQueue.Properties.RedrivePolicy.maxReceiveCount));
    assert.equal(workerEnv.REELAY_QUEUE_VISIBILITY_SECONDS, String(gpuQueue.Properties.VisibilityTimeout));
    assert.equal(workerEnv.REELAY_QUEUE_MAX_RECEIVE_COUNT, String(gpuQueue.Properties.RedrivePolicy.maxReceiveCount));
  });
});

describe('item 6: R2 as the bucket', () => {
  test('parameters for endpoint, bucket and secret; every reelay process gets them', () => {
    for (const p of ['R2Endpoint', 'R2Bucket', 'R2KeysName']) assert.ok(base.json.Parameters[p], p);
    for (const env of [lambdaEnv, workerEnv]) {
      assert.equal(render(env.REELAY_S3_ENDPOINT), 'if(UseR2,{R2Endpoint},)');
      assert.equal(render(env.REELAY_S3_CREDENTIALS_SECRET), 'if(UseR2,{R2KeysName},)');
      assert.match(render(env.REELAY_BUCKET), /^if\(UseR2,s3:\/\/\{R2Bucket\},/);
    }
    assert.ok(base.json.Rules.R2NeedsEndpointAndSecret);
  });

  test('only with R2, router and worker may read exactly that secret', () => {
    const [id, p] = only(R, 'AWS::IAM::ManagedPolicy', (x) => JSON.stringify(x.Properties.PolicyDocument).includes('secretsmanager:'));
    assert.equal(p.Condition, 'UseR2');
    const st = asArray<any>(p.Properties.PolicyDocument.Statement);
    assert.deepEqual(st.map((s) => asArray(s.Action)), [['secretsmanager:GetSecretValue']]);
    assert.deepEqual(asArray(st[0].Resource).map(render), ['arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${R2KeysName}-??????']);
    const roles = asArray<any>(p.Properties.Roles).map((r) => r.Ref).sort();
    assert.deepEqual(roles, [routerFn.Properties.Role['Fn::GetAtt'][0], workerTd.Properties.TaskRoleArn['Fn::GetAtt'][0]].sort(), id);
  });
});

describe('item 7: the Fargate router can write /tmp and does not start before its image exists', () => {
  const f = synth({ router: 'fargate' });
  const [, td] = only(f.resources, 'AWS::ECS::TaskDefinition', (t) => asArray(t.Properties.RequiresCompatibilities).includes('FARGATE'));
  const defs = td.Properties.ContainerDefinitions;
  const router = defs.find((c: any) => c.Name === 'router');
  const init = defs.find((c: any) => c.Name === 'scratch-init');

  test('an init container opens the /tmp volume to the non-root router before it starts', () => {
    assert.ok(init, 'no scratch-init container');
    assert.deepEqual([...init.EntryPoint, ...init.Command], ['/bin/chmod', '1777', '/tmp']);
    assert.equal(init.User, '0');
    assert.equal(init.Essential, false);
    assert.deepEqual(init.MountPoints, router.MountPoints);
    assert.deepEqual(router.MountPoints, [{ ContainerPath: '/tmp', SourceVolume: 'scratch', ReadOnly: false }]);
    assert.equal(router.ReadonlyRootFilesystem, true);
    assert.deepEqual(router.DependsOn, [{ ContainerName: 'scratch-init', Condition: 'SUCCESS' }]);
  });

  test('the service starts at 0 tasks and its minimum is a parameter (default 0)', () => {
    const [, svc] = only(f.resources, 'AWS::ECS::Service', (s) => s.Properties.LaunchType === 'FARGATE' || JSON.stringify(s).includes('Router'));
    assert.equal(svc.Properties.DesiredCount, 0);
    assert.equal(f.json.Parameters.RouterMinTasks.Default, 0);
    const targets = ofType(f.resources, 'AWS::ApplicationAutoScaling::ScalableTarget').map(([, t]) => render(t.Properties.MinCapacity));
    assert.ok(targets.includes('{RouterMinTasks}'), targets.join());
  });

  test('scale-in waits until nothing is waiting or in flight; scale-out wakes it from 0', () => {
    const policies = ofType(f.resources, 'AWS::ApplicationAutoScaling::ScalingPolicy').map(([id, p]) => ({ id, p }));
    const alarmsF = ofType(f.resources, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const idle = alarmsF.find((a) => asArray(a.Metrics).some((m: any) => m.Expression === 'visible + inflight'));
    assert.ok(idle, 'no idle alarm on visible + in flight');
    const out = policies.find(({ p }) => p.Properties.StepScalingPolicyConfiguration?.StepAdjustments?.some((s: any) => s.ScalingAdjustment > 0 && s.MetricIntervalLowerBound === 0));
    assert.ok(out, 'no scale-out step from the first waiting message');
    assert.ok(alarmsF.some((a) => asArray(a.Metrics).some((m: any) => m.Expression === 'FILL(desired, 0) - FILL(running, 0)') && a.AlarmDescription.includes('Router')));
  });
});

describe('fleet options: Spot with on-demand floor, a g4dn/g5/g6 mix, no NAT, an existing bucket', () => {
  test('-c gpuCapacity=spot: a Spot provider takes most tasks, on-demand always the first', () => {
    const s = synth({ gpuCapacity: 'spot', gpuInstanceTypes: 'g4dn.xlarge,g5.xlarge,g6.xlarge' });
    const groups = ofType(s.resources, 'AWS::AutoScaling::AutoScalingGroup').map(([, g]) => g.Properties.MixedInstancesPolicy);
    assert.equal(groups.length, 2);
    for (const g of groups) assert.deepEqual(g.LaunchTemplate.Overrides.map((o: any) => o.InstanceType), ['g4dn.xlarge', 'g5.xlarge', 'g6.xlarge']);
    const spot = groups.find((g) => g.InstancesDistribution.OnDemandPercentageAboveBaseCapacity === 0);
    assert.equal(spot.InstancesDistribution.SpotAllocationStrategy, 'capacity-optimized-prioritized');
    const [, svc] = only(s.resources, 'AWS::ECS::Service');
    const strategy = svc.Properties.CapacityProviderStrategy;
    assert.equal(strategy.length, 2);
    assert.equal(strategy.filter((x: any) => x.Base === 1).length, 1, 'one provider has the base task');
    assert.equal(ofType(s.resources, 'AWS::ECS::CapacityProvider').length, 2);
  });

  test('-c natGateways=0: no NAT gateway, the fleet in public subnets with no inbound rule', () => {
    const s = synth({ natGateways: 0 });
    assert.equal(ofType(s.resources, 'AWS::EC2::NatGateway').length, 0);
    const [, lt] = only(s.resources, 'AWS::EC2::LaunchTemplate');
    assert.equal(lt.Properties.LaunchTemplateData.NetworkInterfaces[0].AssociatePublicIpAddress, true);
    const [, sg] = byPath(s.resources, 'Test/FleetSecurityGroup/Resource');
    assert.equal(sg.Properties.SecurityGroupIngress, undefined);
    assert.equal(ofType(base.resources, 'AWS::EC2::NatGateway').length, 1, 'the default keeps one NAT');
  });

  test('-c existingBucket=NAME: no bucket created; IAM and the queue policy name it; the notification command is an output', () => {
    const s = synth({ existingBucket: 'media-archive' });
    assert.equal(ofType(s.resources, 'AWS::S3::Bucket').filter(([id]) => id.startsWith('Bucket')).length, 0);
    const [, fn] = only(s.resources, 'AWS::Lambda::Function');
    const st = roleStatements(s.resources, fn.Properties.Role['Fn::GetAtt'][0]);
    const puts = st.filter((x) => x.Action.includes('s3:PutObject')).flatMap((x) => x.Resource);
    assert.ok(puts.length > 0 && puts.every((r) => r.includes(':s3:::media-archive/')), puts.join());
    const out = render(s.json.Outputs.ExistingBucketNotifications.Value);
    assert.match(out, /put-bucket-notification-configuration --bucket media-archive/);
    assert.ok(out.includes('"Value":"sources/"') && out.includes('"Value":"jobs/"'));
  });
});

describe('tear-down does not hang on protected work', () => {
  test('destroy.sh stops tasks (StopTask ignores task protection) and lifts instance protection before cdk destroy', () => {
    const file = path.join(REPO_ROOT, 'infra', 'aws', 'scripts', 'destroy.sh');
    execFileSync('bash', ['-n', file]);
    const script = fs.readFileSync(file, 'utf8');
    const order = ['deregister-scalable-target', 'ecs stop-task', '--no-protected-from-scale-in', 'cdk destroy'].map((s) => script.lastIndexOf(s));
    assert.ok(order.every((i) => i > 0), JSON.stringify(order));
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'in this order');
  });
});
