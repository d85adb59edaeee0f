import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as cdk from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { LambdaArch, placeholderElf } from '../lib/lambda-asset';
import { ReelayStack } from '../lib/reelay-stack';
import { REPO_ROOT, readSettings } from '../lib/settings';

/** Feature flags and defaults exactly as `cdk synth` sees them. */
const CDK_JSON_CONTEXT = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')).context;

/**
 * A Lambda asset folder with placeholder ELF `bootstrap` and `ffmpeg` for
 * `arch` (they pass the asset check without being real programs), plus
 * optional extra files.
 */
export function fakeAsset(extra: string[] = [], arch: LambdaArch = 'x86_64'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-asset-'));
  for (const name of ['bootstrap', 'ffmpeg', ...extra]) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    const elf = name === 'bootstrap' || name === 'ffmpeg';
    fs.writeFileSync(path.join(dir, name), elf ? placeholderElf(arch, '2.34') : 'x\n', { mode: 0o755 });
  }
  return dir;
}

export interface Synth {
  template: Template;
  json: any;
  resources: Record<string, any>;
}

export function synth(context: Record<string, unknown> = {}, assetExtra: string[] = []): Synth {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'reelay-cdk-'));
  const app = new cdk.App({
    outdir,
    context: { ...CDK_JSON_CONTEXT, 'aws:cdk:enable-path-metadata': true, lambdaAsset: fakeAsset(assetExtra), ...context },
  });
  const stack = new ReelayStack(app, 'Test', { settings: readSettings(app.node, {}) });
  const template = Template.fromStack(stack);
  const json = template.toJSON();
  return { template, json, resources: json.Resources };
}

/**
 * Every `pub const X: &str = "REELAY_..."` (or `ORT_...`) in src/: the
 * variable names the binary reads, wherever a module declares them.
 */
export function envNamesFromRust(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.rs')) {
        const src = fs.readFileSync(p, 'utf8');
        for (const m of src.matchAll(/^\s*pub\s+const\s+[A-Z0-9_]+\s*:\s*&(?:'static\s+)?str\s*=\s*"((?:REELAY|ORT)_[A-Z0-9_]+)"\s*;/gm)) names.add(m[1]);
      }
    }
  };
  walk(path.join(REPO_ROOT, 'src'));
  if (names.size === 0) throw new Error('no env var constants found in src/');
  return names;
}

/** Intrinsics to a readable string, so resources can be compared as text. */
export function render(v: any): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.map(render).join(',');
  if (v && typeof v === 'object') {
    if ('Ref' in v) return `{${v.Ref}}`;
    if ('Fn::GetAtt' in v) return `{${v['Fn::GetAtt'].join('.')}}`;
    if ('Fn::Join' in v) return v['Fn::Join'][1].map(render).join(v['Fn::Join'][0]);
    if ('Fn::Sub' in v) return String(v['Fn::Sub']);
    if ('Fn::If' in v) return `if(${v['Fn::If'][0]},${render(v['Fn::If'][1])},${render(v['Fn::If'][2])})`;
    if ('Fn::Select' in v) return `select(${render(v['Fn::Select'][1])})`;
    if ('Fn::Split' in v) return `split(${render(v['Fn::Split'][1])})`;
    return JSON.stringify(v);
  }
  return String(v);
}

export const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

export function ofType(resources: Record<string, any>, type: string): [string, any][] {
  return Object.entries(resources).filter(([, r]) => r.Type === type);
}

export function only(resources: Record<string, any>, type: string, pred: (r: any, id: string) => boolean = () => true): [string, any] {
  const found = ofType(resources, type).filter(([id, r]) => pred(r, id));
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}: ${found.map(([id]) => id).join(', ')}`);
  return found[0];
}

export function byPath(resources: Record<string, any>, pathSuffix: string): [string, any] {
  const found = Object.entries(resources).filter(([, r]) => String(r.Metadata?.['aws:cdk:path'] ?? '').endsWith(pathSuffix));
  if (found.length !== 1) throw new Error(`expected one resource at */${pathSuffix}, found ${found.length}`);
  return found[0];
}

export interface Stmt {
  Effect: string;
  Action: string[];
  Resource: string[];
  Condition?: any;
  Sid?: string;
}

/** All identity-policy statements that apply to a role (inline, attached, managed). */
export function roleStatements(resources: Record<string, any>, roleId: string): Stmt[] {
  const role = resources[roleId];
  if (!role || role.Type !== 'AWS::IAM::Role') throw new Error(`${roleId} is not a role`);
  const docs: any[] = [];
  for (const p of asArray(role.Properties.Policies)) docs.push(p.PolicyDocument);
  const managedRefs = asArray(role.Properties.ManagedPolicyArns).map((m: any) => m?.Ref).filter(Boolean);
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::Policy' && asArray(r.Properties.Roles).some((x: any) => x?.Ref === roleId)) docs.push(r.Properties.PolicyDocument);
    if (r.Type === 'AWS::IAM::ManagedPolicy' && (managedRefs.includes(id) || asArray(r.Properties.Roles).some((x: any) => x?.Ref === roleId))) {
      docs.push(r.Properties.PolicyDocument);
    }
  }
  return docs.flatMap((d) =>
    asArray(d.Statement).map((s: any) => ({
      ...s,
      Action: asArray(s.Action),
      Resource: asArray(s.Resource).map(render),
    })),
  );
}

/** Object-key patterns (after the bucket ARN) an action is allowed on. */
export function s3Prefixes(stmts: Stmt[], action: string, bucketId: string): string[] {
  const out = new Set<string>();
  for (const s of stmts) {
    if (s.Effect !== 'Allow' || !s.Action.includes(action)) continue;
    for (const r of s.Resource) {
      const head = `{${bucketId}.Arn}/`;
      if (r.startsWith(head)) out.add(r.slice(head.length));
      else throw new Error(`${action} on a resource outside the bucket's objects: ${r}`);
    }
  }
  return [...out].sort();
}

export function queueActions(stmts: Stmt[], queueId: string): string[] {
  const out = new Set<string>();
  for (const s of stmts) {
    if (s.Effect !== 'Allow') continue;
    if (!s.Resource.includes(`{${queueId}.Arn}`)) continue;
    for (const a of s.Action) if (a.startsWith('sqs:')) out.add(a);
  }
  return [...out].sort();
}

export function containerEnvNames(container: any): string[] {
  return asArray(container.Environment).map((e: any) => e.Name);
}
