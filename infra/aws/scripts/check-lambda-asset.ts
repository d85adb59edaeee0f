// Checks a built Lambda asset the way synth does: node --import tsx scripts/check-lambda-asset.ts DIR [x86_64|arm64]
import { LAMBDA_UNZIPPED_LIMIT, checkLambdaAsset, readElf } from '../lib/lambda-asset';
import { LAMBDA_FONT } from '../lib/settings';

const [dir, arch = 'x86_64'] = process.argv.slice(2);
if (!dir || (arch !== 'x86_64' && arch !== 'arm64')) {
  console.error('usage: check-lambda-asset.ts DIR [x86_64|arm64]');
  process.exit(2);
}
try {
  const c = checkLambdaAsset(dir, arch, LAMBDA_FONT);
  const glibc = (f: string) => readElf(`${dir}/${f}`)?.maxGlibc ?? 'none';
  console.log(
    `${dir}: ${c.bytes} of ${LAMBDA_UNZIPPED_LIMIT} bytes unzipped; bootstrap needs GLIBC_${glibc('bootstrap')}, ` +
      `ffmpeg GLIBC_${glibc('ffmpeg')}; font ${c.font ? 'yes' : 'no'}, reelay.toml ${c.config ? 'yes' : 'no'}`,
  );
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
