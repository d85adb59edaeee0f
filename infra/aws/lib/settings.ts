import * as fs from 'node:fs';
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
  readonly gpuInstanceType: string;
  readonly natGateways: number;
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

export function readSettings(node: Node, env: NodeJS.ProcessEnv = process.env): Settings {
  const router = str(node, 'router', 'lambda');
  if (router !== 'lambda' && router !== 'fargate') {
    throw new Error(`context router=${router}: use "lambda" or "fargate"`);
  }
  const lambdaArch = str(node, 'lambdaArch', 'x86_64');
  if (lambdaArch !== 'x86_64' && lambdaArch !== 'arm64') {
    throw new Error(`context lambdaArch=${lambdaArch}: use "x86_64" or "arm64"`);
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
    gpuInstanceType: str(node, 'gpuInstanceType', 'g4dn.xlarge'),
    natGateways: num(node, 'natGateways', 1),
    r2Bridge: ['true', '1', 'yes'].includes(str(node, 'r2Bridge', 'false').toLowerCase()),
    containerConfigPath: containerConfigPath || undefined,
  };
}

/** Fails synth early with the fix, instead of a confusing asset error later. */
export function checkLambdaAsset(dir: string): { ffmpeg: boolean; config: boolean; font: boolean } {
  const bootstrap = path.join(dir, 'bootstrap');
  if (!fs.existsSync(bootstrap)) {
    throw new Error(
      `no Lambda bootstrap at ${bootstrap}: run infra/aws/scripts/package-lambda.sh, ` +
        'or point REELAY_LAMBDA_ASSET (or -c lambdaAsset=DIR) at a folder holding `bootstrap`',
    );
  }
  return {
    ffmpeg: fs.existsSync(path.join(dir, 'ffmpeg')),
    config: fs.existsSync(path.join(dir, 'reelay.toml')),
    font: fs.existsSync(path.join(dir, LAMBDA_FONT)),
  };
}
