// Prints the identity-policy statements the synthesized stack gives each
// reelay role, with every intrinsic resolved to concrete ARNs of a test
// account, so a test can give an emulator's IAM users exactly these:
//
//   node --import tsx scripts/role-policies.ts '{"bucket":"b","account":"123456789012","region":"us-east-1",
//     "queues":{"EventsQueue":"arn:...:events","GpuQueue":"arn:...:gpu","EventsDlq":"...","GpuDlq":"..."},"cluster":"c"}'
//
// Output: {"lambda": [...], "worker": [...], "router": [...]} (router: the
// Fargate variant's task role). Anything it cannot resolve fails loudly.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as cdk from 'aws-cdk-lib';
import { placeholderElf } from '../lib/lambda-asset';
import { ReelayStack } from '../lib/reelay-stack';
import { readSettings } from '../lib/settings';

interface Target {
  bucket: string;
  account: string;
  region: string;
  queues: Record<string, string>;
  cluster: string;
  /** Set: an R2 deployment (UseR2 true) whose keys secret has this name. */
  r2KeysName?: string;
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string[];
  Resource: string[];
  Condition?: unknown;
}

const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function templateFor(context: Record<string, unknown>): any {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')).context;
  const asset = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-asset-'));
  for (const f of ['bootstrap', 'ffmpeg']) fs.writeFileSync(path.join(asset, f), placeholderElf('x86_64', '2.34'));
  const app = new cdk.App({
    outdir: fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-cdk-')),
    context: { ...cdkJson, 'aws:cdk:enable-path-metadata': true, lambdaAsset: asset, ...context },
  });
  const stack = new ReelayStack(app, 'Reelay', { settings: readSettings(app.node, {}) });
  return app.synth().getStackArtifact(stack.artifactId).template;
}

/** Resolves the intrinsics a role policy uses, for `t`, with no R2 (UseR2 false). */
function resolver(template: any, t: Target) {
  const res: Record<string, any> = template.Resources;
  const cdkPath = (id: string) => String(res[id]?.Metadata?.['aws:cdk:path'] ?? '');
  const named = (id: string): string | undefined => {
    const p = cdkPath(id);
    for (const q of Object.keys(t.queues)) if (p.endsWith(`/${q}/Resource`)) return q;
    return undefined;
  };
  const ref = (id: string): string => {
    const pseudo: Record<string, string> = {
      'AWS::Partition': 'aws',
      'AWS::Region': t.region,
      'AWS::AccountId': t.account,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::StackName': 'Reelay',
    };
    if (id in pseudo) return pseudo[id];
    if (id === 'R2KeysName' && t.r2KeysName) return t.r2KeysName;
    if (template.Parameters?.[id]) {
      const d = template.Parameters[id].Default;
      if (d === undefined) throw new Error(`parameter ${id} has no default`);
      return String(d);
    }
    const r = res[id];
    if (r?.Type === 'AWS::S3::Bucket') return t.bucket;
    if (r?.Type === 'AWS::ECS::Cluster') return t.cluster;
    if (r?.Type === 'AWS::Logs::LogGroup') return r.Properties?.LogGroupName ?? `/reelay/${id}`;
    throw new Error(`cannot resolve Ref ${id} (${r?.Type})`);
  };
  const getAtt = (id: string, attr: string): string => {
    const r = res[id];
    if (attr === 'Arn' && r?.Type === 'AWS::S3::Bucket') return `arn:aws:s3:::${t.bucket}`;
    if (attr === 'Arn' && r?.Type === 'AWS::SQS::Queue') {
      const q = named(id);
      if (!q) throw new Error(`queue ${id} (${cdkPath(id)}) has no test ARN`);
      return t.queues[q];
    }
    if (attr === 'Arn' && r?.Type === 'AWS::Logs::LogGroup') return `arn:aws:logs:${t.region}:${t.account}:log-group:${ref(id)}:*`;
    throw new Error(`cannot resolve GetAtt ${id}.${attr} (${r?.Type})`);
  };
  const conditionValue = (name: string): boolean => {
    if (name === 'UseR2') return Boolean(t.r2KeysName);
    throw new Error(`condition ${name} in a role policy`);
  };
  const resolve = (v: any): any => {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
    if (Array.isArray(v)) return v.map(resolve);
    if (v && typeof v === 'object') {
      if ('Ref' in v) return ref(v.Ref);
      if ('Fn::GetAtt' in v) return getAtt(v['Fn::GetAtt'][0], v['Fn::GetAtt'][1]);
      if ('Fn::Join' in v) return v['Fn::Join'][1].map(resolve).join(v['Fn::Join'][0]);
      if ('Fn::If' in v) return resolve(conditionValue(v['Fn::If'][0]) ? v['Fn::If'][1] : v['Fn::If'][2]);
      if ('Fn::Sub' in v) {
        const [text, vars] = Array.isArray(v['Fn::Sub']) ? v['Fn::Sub'] : [v['Fn::Sub'], {}];
        return String(text).replace(/\$\{([^}]+)\}/g, (_m, name: string) => {
          if (name in vars) return resolve(vars[name]);
          const [id, attr] = name.split('.');
          return attr ? getAtt(id, attr) : ref(id);
        });
      }
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
    }
    return v;
  };
  return resolve;
}

/** Every identity-policy statement attached to `roleId`; conditional (R2-only) policies only with R2. */
function statementsOf(template: any, roleId: string, resolve: (v: any) => any, r2: boolean): Statement[] {
  const res: Record<string, any> = template.Resources;
  const role = res[roleId];
  const docs: any[] = asArray<any>(role.Properties.Policies).map((p) => p.PolicyDocument);
  const managed = asArray<any>(role.Properties.ManagedPolicyArns).map((m) => m?.Ref).filter(Boolean);
  for (const [id, r] of Object.entries(res)) {
    if (r.Condition && !(r.Condition === 'UseR2' && r2)) continue;
    const attached = asArray<any>(r.Properties?.Roles).some((x) => x?.Ref === roleId);
    if (r.Type === 'AWS::IAM::Policy' && attached) docs.push(r.Properties.PolicyDocument);
    if (r.Type === 'AWS::IAM::ManagedPolicy' && (managed.includes(id) || attached)) docs.push(r.Properties.PolicyDocument);
  }
  return docs.flatMap((d) =>
    asArray<any>(d.Statement).map((s) => ({
      ...(s.Sid ? { Sid: s.Sid } : {}),
      Effect: s.Effect,
      Action: asArray<string>(s.Action),
      Resource: asArray(s.Resource).map((r) => String(resolve(r))),
      ...(s.Condition ? { Condition: resolve(s.Condition) } : {}),
    })),
  );
}

export function rolePolicies(t: Target): Record<string, Statement[]> {
  const lambdaTpl = templateFor({});
  const fargateTpl = templateFor({ router: 'fargate' });
  const only = (tpl: any, type: string, pred: (r: any) => boolean) => {
    const found = Object.entries(tpl.Resources).filter(([, r]: [string, any]) => r.Type === type && pred(r));
    if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
    return found[0] as [string, any];
  };
  const [, fn] = only(lambdaTpl, 'AWS::Lambda::Function', () => true);
  const [, workerTd] = only(lambdaTpl, 'AWS::ECS::TaskDefinition', () => true);
  const [, routerTd] = only(fargateTpl, 'AWS::ECS::TaskDefinition', (r) => asArray(r.Properties.RequiresCompatibilities).includes('FARGATE'));
  const r2 = Boolean(t.r2KeysName);
  return {
    lambda: statementsOf(lambdaTpl, fn.Properties.Role['Fn::GetAtt'][0], resolver(lambdaTpl, t), r2),
    worker: statementsOf(lambdaTpl, workerTd.Properties.TaskRoleArn['Fn::GetAtt'][0], resolver(lambdaTpl, t), r2),
    router: statementsOf(fargateTpl, routerTd.Properties.TaskRoleArn['Fn::GetAtt'][0], resolver(fargateTpl, t), r2),
  };
}

if (require.main === module) {
  const t = JSON.parse(process.argv[2] ?? '{}') as Target;
  process.stdout.write(JSON.stringify(rolePolicies(t), null, 1) + '\n');
}
