import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Synth-time checks of the router Lambda's zip asset, so that `cdk deploy`
 * never uploads something Lambda refuses (too big) or that fails only at run
 * time (no FFmpeg for the architecture, a `bootstrap` that needs a newer glibc
 * than provided.al2023's 2.34).
 */

/** Lambda's limit on a function's unzipped code, in bytes (250 MiB). */
export const LAMBDA_UNZIPPED_LIMIT = 262_144_000;
/** glibc of the provided.al2023 runtime. */
export const RUNTIME_GLIBC = '2.34';

export type LambdaArch = 'x86_64' | 'arm64';

/** ELF `e_machine` of each Lambda architecture. */
const ELF_MACHINE: Record<LambdaArch, number> = { x86_64: 62, arm64: 183 };

/** What an ELF file is built for and the newest glibc symbol version it needs. */
export interface ElfInfo {
  machine: number;
  /** e.g. `2.34`; undefined for a static binary or one that needs no versioned glibc symbol. */
  maxGlibc?: string;
}

/** Compares dotted versions numerically (`2.9` < `2.34`). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Reads a 64-bit little-endian ELF's machine and the `GLIBC_x.y` versions in
 * its version-needs section (what `readelf -V` / `objdump -T` list), without
 * binutils, so synth gives the same answer on any host. Returns undefined for
 * a file that is not such an ELF.
 */
export function readElf(file: string): ElfInfo | undefined {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) return undefined;
  if (buf[4] !== 2 || buf[5] !== 1) return undefined; // ELFCLASS64, little-endian only (both Lambda arches)
  const machine = buf.readUInt16LE(18);
  const shoff = Number(buf.readBigUInt64LE(40));
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    if (o + 64 > buf.length) break;
    sections.push({
      type: buf.readUInt32LE(o + 4),
      offset: Number(buf.readBigUInt64LE(o + 24)),
      size: Number(buf.readBigUInt64LE(o + 32)),
      link: buf.readUInt32LE(o + 40),
      info: buf.readUInt32LE(o + 44),
    });
  }
  const SHT_GNU_VERNEED = 0x6ffffffe;
  const versions: string[] = [];
  for (const s of sections.filter((x) => x.type === SHT_GNU_VERNEED)) {
    const strtab = sections[s.link];
    if (!strtab) continue;
    const str = (off: number) => {
      const start = strtab.offset + off;
      const end = buf.indexOf(0, start);
      return buf.toString('latin1', start, end < 0 ? buf.length : end);
    };
    let vn = s.offset;
    for (let i = 0; i < s.info && vn + 16 <= buf.length; i++) {
      const cnt = buf.readUInt16LE(vn + 2);
      let vna = vn + buf.readUInt32LE(vn + 8);
      for (let j = 0; j < cnt && vna + 16 <= buf.length; j++) {
        const name = str(buf.readUInt32LE(vna + 8));
        const m = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(name);
        if (m) versions.push(m[1]);
        const next = buf.readUInt32LE(vna + 12);
        if (next === 0) break;
        vna += next;
      }
      const nextVn = buf.readUInt32LE(vn + 12);
      if (nextVn === 0) break;
      vn += nextVn;
    }
  }
  versions.sort(compareVersions);
  return { machine, maxGlibc: versions[versions.length - 1] };
}

/** Bytes of every file under `dir`, as Lambda counts the unzipped package. */
export function unzippedSize(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += unzippedSize(p);
    else if (entry.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

/** What the asset ships besides `bootstrap` (each sets a variable when present). */
export interface AssetContents {
  ffmpeg: boolean;
  config: boolean;
  font: boolean;
  bytes: number;
}

const FIX = 'run infra/aws/scripts/package-lambda.sh (LAMBDA_ARCH=x86_64|arm64)';

/** One ELF of the asset must be for `arch` and need at most glibc 2.34. */
function checkElf(file: string, arch: LambdaArch, what: string): void {
  const elf = readElf(file);
  if (!elf) throw new Error(`${file}: the ${what} is not a 64-bit ELF executable; ${FIX}`);
  if (elf.machine !== ELF_MACHINE[arch]) {
    const built = Object.entries(ELF_MACHINE).find(([, m]) => m === elf.machine)?.[0] ?? `e_machine ${elf.machine}`;
    throw new Error(`${file}: the ${what} is built for ${built} but the function runs on ${arch}; ${FIX} for ${arch}, or set -c lambdaArch=${built}`);
  }
  if (elf.maxGlibc && compareVersions(elf.maxGlibc, RUNTIME_GLIBC) > 0) {
    throw new Error(
      `${file}: the ${what} needs GLIBC_${elf.maxGlibc} but provided.al2023 has ${RUNTIME_GLIBC}; ` +
        'build with cargo-zigbuild (cargo install cargo-zigbuild; pip install ziglang) and rerun package-lambda.sh',
    );
  }
}

/**
 * Fails synth early, with the fix, on an asset Lambda would refuse or that
 * could not run a CPU step: no `bootstrap`, over 262,144,000 bytes unzipped,
 * no FFmpeg, or a binary for the wrong architecture or a newer glibc.
 */
export function checkLambdaAsset(dir: string, arch: LambdaArch, fontPath: string): AssetContents {
  const bootstrap = path.join(dir, 'bootstrap');
  if (!fs.existsSync(bootstrap)) {
    throw new Error(
      `no Lambda bootstrap at ${bootstrap}: run infra/aws/scripts/package-lambda.sh, ` +
        'or point REELAY_LAMBDA_ASSET (or -c lambdaAsset=DIR) at a folder holding `bootstrap`',
    );
  }
  checkElf(bootstrap, arch, 'bootstrap');
  const ffmpeg = path.join(dir, 'ffmpeg');
  if (!fs.existsSync(ffmpeg)) {
    throw new Error(`no ffmpeg in ${dir}: every CPU step (extract, compile) needs it; ${FIX}`);
  }
  checkElf(ffmpeg, arch, 'ffmpeg');
  const bytes = unzippedSize(dir);
  if (bytes >= LAMBDA_UNZIPPED_LIMIT) {
    throw new Error(
      `${dir} is ${bytes} bytes unzipped, over Lambda's ${LAMBDA_UNZIPPED_LIMIT}; ` +
        'strip the bootstrap (package-lambda.sh does) and ship nothing but bootstrap, ffmpeg, the font and reelay.toml',
    );
  }
  return {
    ffmpeg: true,
    config: fs.existsSync(path.join(dir, 'reelay.toml')),
    font: fs.existsSync(path.join(dir, fontPath)),
    bytes,
  };
}

/**
 * A minimal ELF for `arch` that `readElf` reads like a real one: with
 * `glibc`, a version-needs section asking libc.so.6 for `GLIBC_<glibc>`. For
 * offline synth and the stack's tests, which need an asset but no real binary.
 */
export function placeholderElf(arch: LambdaArch, glibc?: string): Buffer {
  const strtab = Buffer.from(`\0libc.so.6\0GLIBC_${glibc ?? '2.17'}\0`, 'latin1');
  const verneed = Buffer.alloc(32);
  verneed.writeUInt16LE(1, 0); // vn_version
  verneed.writeUInt16LE(1, 2); // vn_cnt
  verneed.writeUInt32LE(1, 4); // vn_file: "libc.so.6"
  verneed.writeUInt32LE(16, 8); // vn_aux
  verneed.writeUInt32LE(11, 24); // vna_name: "GLIBC_x.y"
  const sections = glibc ? 3 : 0;
  const dataOff = 64;
  const shoff = dataOff + strtab.length + verneed.length;
  const b = Buffer.alloc(shoff + sections * 64);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // 64-bit
  b[5] = 1; // little-endian
  b[6] = 1; // version
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(ELF_MACHINE[arch], 18);
  b.writeUInt32LE(1, 20);
  b.writeUInt16LE(64, 52); // e_ehsize
  if (glibc) {
    strtab.copy(b, dataOff);
    verneed.copy(b, dataOff + strtab.length);
    b.writeBigUInt64LE(BigInt(shoff), 40);
    b.writeUInt16LE(64, 58);
    b.writeUInt16LE(sections, 60);
    const sh = (i: number, type: number, offset: number, size: number, link: number, info: number) => {
      const o = shoff + i * 64;
      b.writeUInt32LE(type, o + 4);
      b.writeBigUInt64LE(BigInt(offset), o + 24);
      b.writeBigUInt64LE(BigInt(size), o + 32);
      b.writeUInt32LE(link, o + 40);
      b.writeUInt32LE(info, o + 44);
    };
    sh(1, 3, dataOff, strtab.length, 0, 0); // SHT_STRTAB
    sh(2, 0x6ffffffe, dataOff + strtab.length, verneed.length, 1, 1); // SHT_GNU_verneed
  }
  return b;
}
