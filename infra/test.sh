#!/usr/bin/env bash
# Offline checks for infra/ and containers/: bash infra/test.sh (from anywhere).
# Installs its tools into .tools/infra-venv and */node_modules; no AWS account,
# no credentials, no Docker engine; servers it starts listen on 127.0.0.1 only.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=$REPO/.tools/infra-venv
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reelay-infra-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export TMPDIR=$WORK # temp assets, cdk.out and bundles the tests make go with it

export npm_config_cache=$REPO/.cache/npm npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
export PIP_CACHE_DIR=$REPO/.cache/pip PIP_DISABLE_PIP_VERSION_CHECK=1
# Offline synth: no telemetry, no notices, and no instance-metadata credential probe.
export CDK_DISABLE_CLI_TELEMETRY=true AWS_EC2_METADATA_DISABLED=true WRANGLER_SEND_METRICS=false
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export MOTO_SERVER=$VENV/bin/moto_server

PASSED=0 FAILED=0 SKIPPED=0
FAILED_NAMES=()

step() { printf '\n== %s\n' "$*"; }

# check NAME CMD...: one pass or fail; the log is shown on failure.
check() {
  local name=$1; shift
  local log=$WORK/$(echo "$name" | tr -c 'A-Za-z0-9' '_').log
  if "$@" >"$log" 2>&1; then
    PASSED=$((PASSED + 1)); echo "ok    $name"
  else
    FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); echo "FAIL  $name"; tail -n 60 "$log" | sed 's/^/      /'
  fi
}

# node_tests NAME DIR ARGS...: counts every node:test test, not the run.
node_tests() {
  local name=$1 dir=$2; shift 2
  local log=$WORK/$(echo "$name" | tr -c 'A-Za-z0-9' '_').log rc=0
  (cd "$dir" && node "$@") >"$log" 2>&1 || rc=$?
  local pass fail skip
  pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
  fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
  skip=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$log" | tail -1)
  pass=${pass:-0} fail=${fail:-0} skip=${skip:-0}
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi # crashed before reporting
  if [ $((pass + fail)) -eq 0 ]; then fail=1; fi             # a run that ran nothing proves nothing
  PASSED=$((PASSED + pass)); FAILED=$((FAILED + fail)); SKIPPED=$((SKIPPED + skip))
  if [ "$fail" -gt 0 ]; then
    FAILED_NAMES+=("$name"); echo "FAIL  $name: $pass passed, $fail failed"
    grep -E '^\s*not ok|error:|expected|actual|Error' "$log" | head -n 60 | sed 's/^/      /'
  else
    if [ "$skip" -gt 0 ]; then echo "ok    $name: $pass passed, $skip skipped"; else echo "ok    $name: $pass passed"; fi
  fi
  grep -E '# SKIP' "$log" | sed 's/^ */      skipped: /' || true
}

# ---- setup: tools into project-local, git-ignored folders ----
step "setup"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
stamp=$(sha256sum infra/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$VENV/.reelay-requirements" 2>/dev/null)" != "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r infra/requirements.txt
  echo "$stamp" >"$VENV/.reelay-requirements"
fi
for proj in infra/aws infra/cloudflare; do
  lock=$(sha256sum "$proj/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$proj/node_modules/.reelay-lock" 2>/dev/null)" != "$lock" ]; then
    (cd "$proj" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" >"$proj/node_modules/.reelay-lock"
  fi
done
echo "cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}'), checkov $("$VENV/bin/checkov" --version), $("$VENV/bin/hadolint" --version | tr -d '\n'), moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)')"

# ---- AWS CDK app ----
step "infra/aws"
AWS=$REPO/infra/aws
CDK=$AWS/node_modules/.bin/cdk
ASSET=$WORK/lambda-asset
# Placeholder ELF bootstrap and ffmpeg: they pass the synth-time asset check
# (architecture, glibc) without being real programs; the real asset is checked below.
(cd "$AWS" && node --import tsx -e '
const fs = require("fs"); const { placeholderElf } = require("./lib/lambda-asset");
for (const f of ["bootstrap", "ffmpeg"]) fs.writeFileSync(process.argv[1] + "/" + f, placeholderElf("x86_64", "2.34"), { mode: 0o755 });
' "$(mkdir -p "$ASSET" && echo "$ASSET")")
check "aws: tsc --noEmit" bash -c "cd '$AWS' && ./node_modules/.bin/tsc --noEmit -p ."
synth() { # OUT CONTEXT...
  local out=$1; shift
  (cd "$AWS" && REELAY_LAMBDA_ASSET=$ASSET "$CDK" synth --quiet --no-notices --no-version-reporting --ci -o "$out" "$@") &&
    test -s "$out/Reelay.template.json"
}
check "aws: cdk synth (Lambda router)" synth "$WORK/cdk.out-lambda"
check "aws: cdk synth (-c router=fargate -c r2Bridge=true)" synth "$WORK/cdk.out-fargate" -c router=fargate -c r2Bridge=true
check "aws: cdk synth (-c gpuCapacity=spot -c natGateways=0 -c existingBucket=...)" synth "$WORK/cdk.out-options" \
  -c gpuCapacity=spot -c gpuInstanceTypes=g4dn.xlarge,g5.xlarge,g6.xlarge -c natGateways=0 -c existingBucket=reelay-existing-media
node_tests "aws: node --test (aws-cdk-lib/assertions)" "$AWS" --import tsx --test --test-reporter=tap test/stack.test.ts test/deploy.test.ts test/iam-calls.test.ts
# The Lambda asset built the way it ships (release, stripped, FFmpeg of the
# architecture) passes the same check synth runs; REELAY_SKIP_LAMBDA_BUILD=1
# skips the release build where it was just done.
REAL_ASSET=${REELAY_LAMBDA_REAL_ASSET:-$REPO/target/lambda/reelay-lambda}
if [ "${REELAY_SKIP_LAMBDA_BUILD:-0}" != 1 ]; then
  check "aws: package-lambda.sh builds an asset that passes the synth check" \
    env REELAY_LAMBDA_ASSET="$REAL_ASSET" bash "$AWS/scripts/package-lambda.sh"
else
  check "aws: the shipped Lambda asset passes the synth check" \
    bash -c "cd '$AWS' && node --import tsx scripts/check-lambda-asset.ts '$REAL_ASSET' x86_64"
fi
TEMPLATES=()
for t in "$WORK"/cdk.out-*/Reelay.template.json; do [ -s "$t" ] && TEMPLATES+=("$t"); done
if [ "${#TEMPLATES[@]}" -eq 3 ]; then
  check "aws: cfn-lint (0 errors, 0 warnings)" "$VENV/bin/cfn-lint" "${TEMPLATES[@]}"
  checkov_all() {
    local f args=()
    for f in "${TEMPLATES[@]}"; do args+=(-f "$f"); done
    "$VENV/bin/checkov" "${args[@]}" --framework cloudformation --skip-download --quiet --compact
  }
  check "aws: checkov (0 failed)" checkov_all
else
  FAILED=$((FAILED + 2)); FAILED_NAMES+=("cfn-lint/checkov: no templates"); echo "FAIL  cfn-lint, checkov: synth produced no templates"
fi

# ---- Cloudflare R2 bridge ----
step "infra/cloudflare"
CF=$REPO/infra/cloudflare
check "cloudflare: tsc --noEmit" bash -c "cd '$CF' && ./node_modules/.bin/tsc --noEmit -p ."
node_tests "cloudflare: miniflare -> moto SQS" "$CF" --test --test-reporter=tap test/

# ---- containers ----
step "containers"
check "containers: hadolint" "$VENV/bin/hadolint" containers/gpu-worker.Dockerfile containers/router.Dockerfile
node_tests "containers: Dockerfile structure" "$REPO" --test --test-reporter=tap containers/test/

step "summary"
if [ "$FAILED" -gt 0 ]; then printf 'failed: %s\n' "${FAILED_NAMES[@]}"; fi
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
