// Structural checks on the Dockerfiles that a linter can't make: what the
// images are built from, who they run as, and that every COPY has a source.
// No Docker engine needed. Run: node --test containers/test/
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const containers = path.resolve(here, '..');
const repo = path.resolve(containers, '..');

/** Instructions with continuations joined and comment lines dropped. */
export function parseDockerfile(text) {
  const out = [];
  let buf = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line) && !buf) continue; // comment (or parser directive)
    if (/^\s*#/.test(line)) continue; // comment inside a continuation: Docker drops it
    if (!buf && !line.trim()) continue;
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      continue;
    }
    buf += line;
    const m = buf.trim().match(/^(\S+)\s*([\s\S]*)$/);
    out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    buf = '';
  }
  return out;
}

/** Stages with their instructions, ARGs substituted for one set of build args. */
export function stages(instrs, buildArgs = {}) {
  const globals = {};
  const result = [];
  let cur = null;
  const subst = (s, scope) => s.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (all, k) => (k in scope ? scope[k] : all));
  for (const ins of instrs) {
    if (ins.op === 'ARG' && !cur) {
      const [k, v = ''] = ins.args.split('=');
      globals[k] = k in buildArgs ? buildArgs[k] : v;
      continue;
    }
    if (ins.op === 'FROM') {
      const parts = subst(ins.args, globals).split(/\s+/).filter((p) => !p.startsWith('--'));
      const image = parts[0];
      const name = /^as$/i.test(parts[1] ?? '') ? parts[2] : undefined;
      cur = { image, name, instrs: [], scope: {}, fromStage: result.find((s) => s.name === image) };
      result.push(cur);
      continue;
    }
    if (ins.op === 'ARG') {
      const [k, v] = ins.args.split('=');
      cur.scope[k] = k in buildArgs ? buildArgs[k] : v !== undefined ? v : globals[k];
    }
    cur.instrs.push({ ...ins, args: subst(ins.args, { ...globals, ...cur.scope }) });
  }
  return result;
}

/** `KEY=VALUE KEY2=VALUE` (or legacy `KEY VALUE`) from ENV instructions. */
function envOf(stage) {
  const env = {};
  for (const i of stage.instrs.filter((x) => x.op === 'ENV')) {
    const pairs = i.args.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|\S*)/g);
    if (pairs) for (const p of pairs) env[p.split('=')[0]] = p.slice(p.indexOf('=') + 1).replace(/^"|"$/g, '');
    else {
      const [k, ...v] = i.args.split(/\s+/);
      env[k] = v.join(' ');
    }
  }
  return env;
}

/** Names the binary reads, from src/config/env.rs. */
function envNamesFromRust() {
  const src = fs.readFileSync(path.join(repo, 'src', 'config', 'env.rs'), 'utf8');
  return new Set([...src.matchAll(/^\s*pub\s+const\s+[A-Z0-9_]+\s*:\s*&(?:'static\s+)?str\s*=\s*"([A-Z0-9_]+)"\s*;/gm)].map((m) => m[1]));
}

/** Allowlist-style .dockerignore (`*` then `!path`): is a context path sent? */
function sentToBuild(ignoreFile, rel) {
  if (!fs.existsSync(ignoreFile)) return true;
  const rules = fs.readFileSync(ignoreFile, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  let sent = true;
  const norm = rel.replace(/^\.\//, '').replace(/\/$/, '');
  for (const r of rules) {
    const neg = r.startsWith('!');
    const pat = (neg ? r.slice(1) : r).replace(/\/$/, '');
    const hit = pat === '*' || pat === '**' || norm === pat || norm.startsWith(pat + '/');
    if (hit) sent = neg;
  }
  return sent;
}

function copies(stage) {
  return stage.instrs
    .filter((i) => i.op === 'COPY' || i.op === 'ADD')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const rest = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { op: i.op, from, srcs: rest.slice(0, -1), dest: rest[rest.length - 1] };
    });
}

const files = {
  'gpu-worker.Dockerfile': {
    // CUDA 13 only; the libraries come from containers/worker-libs.txt (worker-pins.test.mjs).
    finalBase: /^nvidia\/cuda:13\.\d+\.\d+-base-ubuntu\d+\.\d+$/,
    minStages: 2, // assemble (containers/assemble-worker.sh), runtime
    cmd: 'work',
    env: ['ORT_DYLIB_PATH', 'REELAY_FFMPEG', 'REELAY_FONT', 'REELAY_MODELS_DIR'],
    pins: ['containers/assemble-worker.sh', 'containers/worker-libs.txt', 'libonnxruntime.so.1.31.1'],
  },
  'router.Dockerfile': {
    finalBase: /^debian:[a-z]+-slim$/,
    minStages: 3, // fetch, build, runtime
    cmd: 'route',
    env: ['REELAY_FFMPEG', 'REELAY_FONT'],
    pins: ['imageio-ffmpeg==0.8.1', 'ffmpeg-linux-x86_64-v9.0.2', 'font-roboto==0.0.1'],
  },
};

const knownEnv = envNamesFromRust();

for (const [file, spec] of Object.entries(files)) {
  const text = fs.readFileSync(path.join(containers, file), 'utf8');
  const instrs = parseDockerfile(text);

  describe(file, () => {
    test('uses BuildKit syntax and several stages', () => {
      assert.match(text.split('\n')[0], /^# syntax=docker\/dockerfile:1(\.\d+)?$/);
      assert.ok(stages(instrs).length >= spec.minStages, `multi-stage: at least ${spec.minStages} stages`);
    });

    {
      test('final image base, non-root user, healthcheck, entrypoint', () => {
        const st = stages(instrs);
        const last = st[st.length - 1];
        // FROM an earlier stage: walk to its external base.
        let base = last;
        while (base.fromStage) base = base.fromStage;
        assert.match(base.image, spec.finalBase, `final base ${base.image}`);
        for (const s of st) {
          if (!s.fromStage) assert.match(s.image, /^[a-z0-9./_-]+:[A-Za-z0-9._-]+$/, `${s.image}: external images need an explicit tag`);
          if (!s.fromStage) assert.ok(!s.image.endsWith(':latest'), `${s.image}: no :latest`);
        }
        const users = last.instrs.filter((i) => i.op === 'USER');
        assert.ok(users.length >= 1, 'no USER in the final stage');
        const user = users[users.length - 1].args.split(':')[0];
        assert.ok(!['root', '0'].includes(user), `runs as ${user}`);
        assert.match(user, /^\d+$/, 'numeric uid, so runAsNonRoot-style checks can verify it');
        assert.notEqual(Number(user), 0);
        const hc = last.instrs.filter((i) => i.op === 'HEALTHCHECK');
        assert.equal(hc.length, 1);
        assert.ok(!/^NONE/i.test(hc[0].args));
        assert.match(hc[0].args, /CMD\s+\[/, 'exec-form healthcheck');
        const ep = JSON.parse(last.instrs.find((i) => i.op === 'ENTRYPOINT').args);
        assert.ok(ep.some((a) => a.endsWith('/reelay')), `entrypoint ${ep}`);
        const cmd = JSON.parse(last.instrs.find((i) => i.op === 'CMD').args);
        assert.equal(cmd[0], spec.cmd);
      });
    }

    test('ENV sets only variables the binary reads, and the ones this image needs', () => {
      const st = stages(instrs);
      const env = envOf(st[st.length - 1]);
      for (const k of Object.keys(env)) {
        if (k.startsWith('REELAY_') || k.startsWith('ORT_')) assert.ok(knownEnv.has(k), `${k} is not declared in src/config/env.rs`);
      }
      for (const k of spec.env) assert.ok(env[k], `${k} not set`);
      // Paths the ENV points at must be files this Dockerfile puts there.
      const dests = copies(st[st.length - 1]).map((c) => c.dest);
      for (const k of ['ORT_DYLIB_PATH', 'REELAY_FFMPEG', 'REELAY_FONT']) {
        if (!env[k]) continue;
        assert.ok(dests.some((d) => env[k] === d || (d.endsWith('/') && env[k].startsWith(d))), `${k}=${env[k]} is not copied in`);
      }
      if (file.startsWith('gpu')) assert.match(env.NVIDIA_DRIVER_CAPABILITIES ?? '', /\bvideo\b/, 'NVENC needs the video capability');
    });

    test('pins the wheels it unpacks', () => {
      for (const p of spec.pins) assert.ok(text.includes(p), `missing ${p}`);
    });

    test('every COPY source comes from an earlier stage or the build context', () => {
      const st = stages(instrs);
      const ignore = path.join(containers, `${file}.dockerignore`);
      assert.ok(fs.existsSync(ignore), 'a per-Dockerfile .dockerignore keeps target/ and node_modules out of the context');
      st.forEach((s, idx) => {
        for (const c of copies(s)) {
          assert.equal(c.op, 'COPY', 'ADD fetches URLs and unpacks archives implicitly; use COPY');
          if (c.from) {
            const src = st.slice(0, idx).find((x) => x.name === c.from);
            assert.ok(src, `COPY --from=${c.from}: no earlier stage of that name`);
            const runText = src.instrs.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
            for (const p of c.srcs) {
              const dir = p.replace(/\/$/, '');
              assert.ok(runText.includes(dir), `COPY --from=${c.from} ${p}: stage ${c.from} never writes it`);
            }
          } else {
            for (const p of c.srcs) {
              const rel = p.replace(/^\.\//, '');
              if (rel === 'models/' || rel === 'models') continue; // checked in its own test
              assert.ok(fs.existsSync(path.join(repo, rel)), `COPY ${p}: not in the repository`);
              assert.ok(sentToBuild(ignore, rel), `COPY ${p}: excluded by ${path.basename(ignore)}`);
            }
          }
        }
      });
    });
  });
}

describe('gpu-worker.Dockerfile models', () => {
  const modelsDir = path.join(repo, 'models');
  test('COPY models/ has a models/ folder with ONNX files to copy', { skip: fs.existsSync(modelsDir) ? false : 'models/ is not in the repository yet (see /work/shared/models)' }, () => {
    assert.ok(sentToBuild(path.join(containers, 'gpu-worker.Dockerfile.dockerignore'), 'models/'));
    const onnx = fs.readdirSync(modelsDir).filter((f) => f.endsWith('.onnx'));
    assert.ok(onnx.length >= 1, 'models/ holds no .onnx file');
  });
});

describe('parser self-check', () => {
  test('continuations, comments and ARG substitution', () => {
    const p = parseDockerfile('# c\nARG X=1\nFROM a:${X} AS s\nRUN echo \\\n  # gone\n  hi\nCOPY --from=s /o /o\n');
    assert.deepEqual(p.map((i) => i.op), ['ARG', 'FROM', 'RUN', 'COPY']);
    assert.equal(p[2].args.replace(/\s+/g, ' '), 'echo hi');
    const st = stages(p, { X: '2' });
    assert.equal(st[0].image, 'a:2');
    assert.equal(st[0].name, 's');
  });
});

// ---- The GPU worker's pins (containers/worker-libs.txt) against its Dockerfile:
// the base image's CUDA release is the one the nvidia-* wheels come from, the
// ONNX Runtime the image points at is the pinned one, and the health check is
// `reelay doctor`. Each rule is shown to fail on a deliberately wrong copy.

const read = (...p) => fs.readFileSync(path.join(...p), 'utf8');

/** `{ cudaRelease, pins: {name: version} }` from worker-libs.txt. */
export function parsePins(text) {
  const release = text.match(/^#\s*cuda-release:\s*(\d+\.\d+\.\d+)\s*$/m)?.[1];
  const pins = {};
  for (const line of text.split('\n')) {
    const l = line.replace(/#.*/, '').trim();
    if (!l) continue;
    const m = l.match(/^([A-Za-z0-9._-]+)==([A-Za-z0-9.]+)$/);
    if (!m) throw new Error(`not an exact pin: ${l}`);
    pins[m[1]] = m[2];
  }
  return { cudaRelease: release, pins };
}

/** Every disagreement between the Dockerfile, the pins and setup-ort.sh. */
export function pinProblems(dockerfile, pinsText, setupOrt) {
  const problems = [];
  const { cudaRelease, pins } = parsePins(pinsText);
  if (!cudaRelease) return ['worker-libs.txt has no "# cuda-release: X.Y.Z" line'];
  const [major, minor] = cudaRelease.split('.');
  const st = stages(parseDockerfile(dockerfile));
  const last = st[st.length - 1];
  let base = last;
  while (base.fromStage) base = base.fromStage;
  const tag = base.image.match(/^nvidia\/cuda:(\d+\.\d+\.\d+)-/)?.[1];
  if (tag !== cudaRelease) problems.push(`base image ${base.image} is CUDA ${tag}, the pins are CUDA ${cudaRelease}`);
  // Toolkit-numbered components carry the release's major.minor.
  for (const name of ['nvidia-cuda-runtime', 'nvidia-cuda-nvrtc']) {
    if (!pins[name]) problems.push(`${name} is not pinned`);
    else if (!pins[name].startsWith(`${major}.${minor}.`)) problems.push(`${name}==${pins[name]} is not CUDA ${major}.${minor}`);
  }
  if (!pins['nvidia-cublas']?.startsWith(`${major}.`)) problems.push(`nvidia-cublas==${pins['nvidia-cublas']} is not cuBLAS ${major}`);
  if (!pins['nvidia-curand']) problems.push('nvidia-curand is not pinned');
  const cudnn = Object.keys(pins).find((n) => n.startsWith('nvidia-cudnn-'));
  if (cudnn !== `nvidia-cudnn-cu${major}`) problems.push(`cuDNN wheel ${cudnn} is not the CUDA ${major} build (nvidia-cudnn-cu${major})`);
  else if (!pins[cudnn].startsWith('9.')) problems.push(`${cudnn}==${pins[cudnn]} is not cuDNN 9`);
  const ort = pins['onnxruntime-gpu'];
  if (!ort) problems.push('onnxruntime-gpu is not pinned');
  const env = last.instrs.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
  const dylib = env.match(/ORT_DYLIB_PATH=(\S+)/)?.[1] ?? '';
  if (!dylib.endsWith(`/libonnxruntime.so.${ort}`)) problems.push(`ORT_DYLIB_PATH=${dylib} is not the versioned libonnxruntime.so.${ort}`);
  const cpuOrt = setupOrt.match(/^VERSION=(\S+)$/m)?.[1];
  if (cpuOrt !== ort) problems.push(`models/setup-ort.sh installs ONNX Runtime ${cpuOrt}, the image ${ort}: one API level for both`);
  const runs = st.flatMap((s) => s.instrs.filter((i) => i.op === 'RUN').map((i) => i.args)).join('\n');
  if (!/assemble-worker\.sh --profile release/.test(runs)) problems.push('the image is not laid out by containers/assemble-worker.sh --profile release');
  const hc = last.instrs.find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
  if (!/"doctor"/.test(hc)) problems.push(`HEALTHCHECK does not run reelay doctor: ${hc}`);
  return problems;
}

const workerDockerfile = read(containers, 'gpu-worker.Dockerfile');
const pinsText = read(containers, 'worker-libs.txt');
const setupOrt = read(repo, 'models', 'setup-ort.sh');

test('the Dockerfile base, ORT_DYLIB_PATH, setup-ort.sh and worker-libs.txt agree', () => {
  assert.deepEqual(pinProblems(workerDockerfile, pinsText, setupOrt), []);
});

test('a CUDA 12 base under CUDA 13 pins is caught', () => {
  const wrong = workerDockerfile.replace(/nvidia\/cuda:13\.0\.2-base/, 'nvidia/cuda:12.9.1-base');
  assert.notEqual(wrong, workerDockerfile);
  assert.match(pinProblems(wrong, pinsText, setupOrt).join('\n'), /CUDA 12\.9\.1, the pins are CUDA 13\.0\.2/);
});

test('a runtime wheel from another CUDA release, or a cuDNN for CUDA 12, is caught', () => {
  const wrong = pinsText.replace(/nvidia-cuda-runtime==\S+/, 'nvidia-cuda-runtime==13.2.51').replace(/nvidia-cudnn-cu13==/, 'nvidia-cudnn-cu12==');
  const p = pinProblems(workerDockerfile, wrong, setupOrt).join('\n');
  assert.match(p, /nvidia-cuda-runtime==13\.2\.51 is not CUDA 13\.0/);
  assert.match(p, /nvidia-cudnn-cu12 is not the CUDA 13 build/);
});

test('an unversioned ORT_DYLIB_PATH, another ONNX Runtime, or a --version health check is caught', () => {
  const wrong = workerDockerfile
    .replace(/libonnxruntime\.so\.1\.31\.1/, 'libonnxruntime.so')
    .replace(/"doctor", "--quick", "--device", "cuda"/, '"--version"');
  const p = pinProblems(wrong, pinsText.replace('onnxruntime-gpu==1.31.1', 'onnxruntime-gpu==1.26.0'), setupOrt).join('\n');
  assert.match(p, /ORT_DYLIB_PATH=\/opt\/reelay\/lib\/libonnxruntime\.so is not the versioned/);
  assert.match(p, /setup-ort\.sh installs ONNX Runtime 1\.31\.1, the image 1\.26\.0/);
  assert.match(p, /HEALTHCHECK does not run reelay doctor/);
});

test('a pin that is not exact is refused', () => {
  assert.throws(() => parsePins('onnxruntime-gpu>=1.31\n'), /not an exact pin/);
});
