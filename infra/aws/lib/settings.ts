import * as path from 'node:path';
import { Node } from 'constructs';

/** Repository root: infra/aws/lib -> ../../.. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** Caption font inside the Lambda asset (package-lambda.sh puts it there). */
export const LAMBDA_FONT = 'fonts/Roboto-Bold.ttf';

/** Where `scripts/package-lambda.sh` leaves `bootstrap` (and `ffmpeg`, the font, `reelay.toml`). */
export const DEFAULT_LAMBDA_ASSET = path.join(REPO_ROOT, 'target', 'lambda', 'reelay-lambda');

export type RouterKind = 'lambda' | 'fargate';

/** Deploy-time knobs that shape resources, read from CDK context (cdk.json or `-c key=value`). */
export interface Settings {
  readonly router: RouterKind;
  /** Folder with `bootstrap`; env REELAY_LAMBDA_ASSET wins over context `lambdaAsset`. */
  readonly lambdaAssetDir: string;
  readonly lambdaArch: 'x86_64' | 'arm64';
  readonly lambdaTimeoutSeconds: number;
  readonly lambdaMemoryMiB: number;
  readonly routerConcurrency: number;
  readonly routerBatchSize: number;
  readonly routerBatchingWindowSeconds: number;
  readonly eventsMaxReceiveCount: number;
  readonly gpuMaxReceiveCount: number;
  readonly gpuTaskTimeoutSeconds: number;
  /** 0 disables the `work/` expiry rule. */
  readonly workExpiryDays: number;
  readonly logRetentionDays: number;
  /** Instance types the GPU fleet may launch, in order of preference (one T4/A10G/L4 each). */
  readonly gpuInstanceTypes: string[];
  /** `on-demand`, or `spot`: a Spot capacity provider first, on-demand as the fallback. */
  readonly gpuCapacity: 'on-demand' | 'spot';
  /** 0: no NAT gateway; the fleet sits in public subnets (no inbound) so the idle stack costs ~$0. */
  readonly natGateways: number;
  /**
   * Key prefixes reelay may write outputs under (`REELAY_OUTPUT_PREFIXES`); IAM
   * writes are scoped to exactly these plus `work/` and `_reelay/`.
   */
  readonly outputPrefixes: string[];
  /** Name of a bucket that already exists; unset: the stack creates one. */
  readonly existingBucket?: string;
  /** Create an IAM group + user the Cloudflare R2 bridge signs with (send to events only). */
  readonly r2Bridge: boolean;
  /** Path of reelay.toml inside the container images; unset: no REELAY_CONFIG for ECS. */
  readonly containerConfigPath?: string;
}

function num(node: Node, key: string, fallback: number): number {
  const raw = node.tryGetContext(key);
  if (raw === undefined || raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`context ${key}=${JSON.stringify(raw)} is not a number`);
  return n;
}

function str(node: Node, key: string, fallback: string): string {
  const raw = node.tryGetContext(key);
  return raw === undefined || raw === null || raw === '' ? fallback : String(raw);
}

/** A comma-separated context value (or a JSON array) as a list of non-empty strings. */
function list(node: Node, key: string, fallback: string): string[] {
  const raw = node.tryGetContext(key);
  const items = Array.isArray(raw) ? raw.map(String) : str(node, key, fallback).split(',');
  return items.map((x) => x.trim()).filter((x) => x.length > 0);
}

/** Output prefixes end in `/` and never overlap the upload or internal prefixes. */
function prefixes(items: string[]): string[] {
  for (const p of items) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\/$/.test(p)) {
      throw new Error(`context outputPrefixes: \`${p}\` is not a top-level prefix such as exports/ (letters, digits, . _ -, ending in /)`);
    }
    if (['sources/', 'jobs/', 'work/', '_reelay/'].includes(p)) {
      throw new Error(`context outputPrefixes: \`${p}\` is reserved (uploads or reelay's own); pick another folder`);
    }
  }
  if (items.length === 0) throw new Error('context outputPrefixes is empty: reelay needs at least exports/');
  return [...new Set(items)];
}

export function readSettings(node: Node, env: NodeJS.ProcessEnv = process.env): Settings {
  const router = str(node, 'router', 'lambda');
  if (router !== 'lambda' && router !== 'fargate') {
    throw new Error(`context router=${router}: use "lambda" or "fargate"`);
  }
  const lambdaArch = str(node, 'lambdaArch', 'x86_64');
  if (lambdaArch !== 'x86_64' && lambdaArch !== 'arm64') {
    throw new Error(`context lambdaArch=${lambdaArch}: use "x86_64" or "arm64"`);
  }
  const gpuCapacity = str(node, 'gpuCapacity', 'on-demand');
  if (gpuCapacity !== 'on-demand' && gpuCapacity !== 'spot') {
    throw new Error(`context gpuCapacity=${gpuCapacity}: use "on-demand" or "spot"`);
  }
  const assetDir = env.REELAY_LAMBDA_ASSET || str(node, 'lambdaAsset', DEFAULT_LAMBDA_ASSET);
  const containerConfigPath = str(node, 'containerConfigPath', '');
  return {
    router,
    lambdaAssetDir: path.resolve(assetDir),
    lambdaArch,
    lambdaTimeoutSeconds: num(node, 'lambdaTimeoutSeconds', 600),
    lambdaMemoryMiB: num(node, 'lambdaMemoryMiB', 4096),
    routerConcurrency: num(node, 'routerConcurrency', 10),
    routerBatchSize: num(node, 'routerBatchSize', 5),
    routerBatchingWindowSeconds: num(node, 'routerBatchingWindowSeconds', 2),
    eventsMaxReceiveCount: num(node, 'eventsMaxReceiveCount', 5),
    gpuMaxReceiveCount: num(node, 'gpuMaxReceiveCount', 3),
    gpuTaskTimeoutSeconds: num(node, 'gpuTaskTimeoutSeconds', 900),
    workExpiryDays: num(node, 'workExpiryDays', 14),
    logRetentionDays: num(node, 'logRetentionDays', 30),
    gpuInstanceTypes: list(node, 'gpuInstanceTypes', str(node, 'gpuInstanceType', 'g4dn.xlarge')),
    gpuCapacity,
    natGateways: num(node, 'natGateways', 1),
    outputPrefixes: prefixes(list(node, 'outputPrefixes', 'exports/,detections/')),
    existingBucket: str(node, 'existingBucket', '') || undefined,
    r2Bridge: ['true', '1', 'yes'].includes(str(node, 'r2Bridge', 'false').toLowerCase()),
    containerConfigPath: containerConfigPath || undefined,
  };
}
