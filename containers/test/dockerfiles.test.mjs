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
    finalBase: { 13: /^nvidia\/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/, 12: /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/ },
    cmd: 'work',
    env: ['ORT_DYLIB_PATH', 'REELAY_FFMPEG', 'REELAY_FONT', 'REELAY_MODELS_DIR'],
    pins: ['onnxruntime-gpu==${ort}', 'ort=1.31.1', 'ort=1.26.0', 'imageio-ffmpeg==0.8.1', 'ffmpeg-linux-x86_64-v9.0.2', 'font-roboto==0.0.1'],
  },
  'router.Dockerfile': {
    finalBase: { 13: /^debian:[a-z]+-slim$/, 12: /^debian:[a-z]+-slim$/ },
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
      assert.ok(stages(instrs).length >= 3, 'multi-stage: fetch, build, runtime');
    });

    for (const cuda of ['13', '12']) {
      test(`CUDA=${cuda}: final image base, non-root user, healthcheck, entrypoint`, () => {
        const st = stages(instrs, { CUDA: cuda });
        const last = st[st.length - 1];
        // FROM an earlier stage: walk to its external base.
        let base = last;
        while (base.fromStage) base = base.fromStage;
        assert.match(base.image, spec.finalBase[cuda], `final base ${base.image}`);
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
