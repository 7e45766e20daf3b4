#!/usr/bin/env bash
# The GPU path in one prepared check, under 8 minutes on a machine with a CUDA GPU:
#   1. the model bench, short, on the GPU   (bench/model.py --quick --device cuda)
#   2. a small generated world               (generate, ingest, backfill the features)
#   3. one short training through TorchDistributor with train.use_gpu: auto
#      (CUDA; nccl between the ranks when 2+ GPUs are visible: 2 processes)
#   4. scoring with the model it trained     (duia score)
# Writes bench/results/gpu.md: nvidia-smi, each step's result and time, the lines that
# matter from each step's log. Stops at once, with one clear line, when no CUDA device is
# visible; a step that fails stops the check, and the report says which and why.
#
#   bash bench/gpu_check.sh        # PY=... another interpreter; WORK=... keep the state there
#
# TorchDistributor in local mode hands GPUs only to a driver that declares them, so the
# check starts Spark with spark.driver.resource.gpu.amount and a discovery script (the
# same two settings a GPU machine needs for `duia train` with train.use_gpu: auto).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/gpu.md}
BUDGET_S=${BUDGET_S:-470}
START=$(date +%s)

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- 0. a CUDA device?
command -v nvidia-smi >/dev/null 2>&1 ||
    fail "no CUDA device: nvidia-smi is not installed (no NVIDIA driver); run this on a GPU machine"
nvidia-smi -L >/dev/null 2>&1 ||
    fail "no CUDA device: nvidia-smi cannot talk to the driver ($(nvidia-smi -L 2>&1 | head -1))"
[ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || fail "no Python at $PY (make setup, or PY=...)"
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
[ "$NGPU" -ge 1 ] ||
    fail "no CUDA device visible to torch $("$PY" -c 'import torch; print(torch.__version__)') (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})"
PROCS=$((NGPU >= 2 ? 2 : 1))
WORK=${WORK:-$(mktemp -d /tmp/duia-gpu-check.XXXXXX)}
mkdir -p "$WORK"

# ---------------------------------------------------------------- settings
cat >"$WORK/gpus.sh" <<EOF
#!/usr/bin/env bash
# Spark resource discovery: the GPUs torch sees, as indices into CUDA_VISIBLE_DEVICES.
echo '{"name": "gpu", "addresses": [$(seq -s, -f '"%g"' 0 $((NGPU - 1)))]}'
EOF
chmod +x "$WORK/gpus.sh"
cat >"$WORK/gpu.yaml" <<EOF
lakehouse: {root: $WORK/lake}
mlflow: {tracking_uri: "sqlite:///$WORK/mlflow.db", artifact_root: $WORK/mlartifacts}
spark:
  master: "local[8]"
  log_level: ERROR
  extra:
    spark.driver.resource.gpu.amount: "$NGPU"
    spark.driver.resource.gpu.discoveryScript: $WORK/gpus.sh
train:
  use_gpu: auto
  num_processes: $PROCS
  train_days: 4
  epochs: 1
  checkpoint_dir: $WORK/checkpoints
  petastorm_cache_dir: $WORK/petastorm
EOF
RAW=$WORK/raw
FIRST=2026-01-01
NIGHT=2026-01-06
DUIA=("$PY" -m duia_spark.cli)
CONF=(--conf "$WORK/gpu.yaml")

# ---------------------------------------------------------------- steps
ROWS=()
SECTIONS=()
left() { echo $((BUDGET_S - ($(date +%s) - START))); }

# step NAME LIMIT_S GREP_PATTERN COMMAND...: runs COMMAND with the smaller of LIMIT_S and
# the time left, logs to $WORK, keeps the lines matching GREP_PATTERN for the report.
step() {
    local name=$1 limit=$2 pattern=$3
    shift 3
    local log t0 rc=0 budget took result kept
    log="$WORK/$(echo "$name" | tr -c 'a-z0-9' '_').log"
    budget=$(left)
    if ((budget < limit)); then limit=$budget; fi
    if ((limit < 10)); then
        ROWS+=("| $name | NOT RUN (the ${BUDGET_S} s budget was spent) | - |")
        return 1
    fi
    echo "[gpu_check] $name (at most ${limit} s)"
    t0=$(date +%s)
    timeout "$limit" "$@" >"$log" 2>&1 || rc=$?
    took=$(($(date +%s) - t0))
    if ((rc == 0)); then
        result="ok"
    elif ((rc == 124)); then
        result="FAILED: timed out after ${limit} s"
    else
        result="FAILED (exit $rc): $(grep -E 'Error|error|failed|refused' "$log" | tail -1 | cut -c1-200 || true)"
    fi
    ROWS+=("| $name | ${result//|//} | $took |")
    kept=$(grep -E "$pattern" "$log" | tail -40 || true)
    if ((rc != 0)); then kept="$kept"$'\n...\n'"$(tail -25 "$log")"; fi
    SECTIONS+=("## $name"$'\n\n`'"$*"$'`\n\n```text\n'"$kept"$'\n```\n')
    echo "[gpu_check] $name: $result (${took} s)"
    return "$rc"
}

cat >"$WORK/set_champion.py" <<'PYTHON'
import sys

from mlflow import MlflowClient

from duia_spark import tracking
from duia_spark.config import load_config

cfg = load_config(sys.argv[1])
tracking.configure_mlflow(cfg)
client, name = MlflowClient(), cfg.mlflow.registered_model
version = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
client.set_registered_model_alias(name, cfg.mlflow.champion_alias, version.version)
print(f"{name} version {version.version} is now {cfg.mlflow.champion_alias}")
PYTHON

write_report() {
    {
        echo "# GPU check (\`bash bench/gpu_check.sh\`)"
        echo
        echo "$(date -u +%Y-%m-%dT%H:%MZ) on $(hostname), torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'), $NGPU GPU(s) visible, training with $PROCS process(es), $(($(date +%s) - START)) s in all (budget $BUDGET_S s)."
        echo
        echo '```text'
        nvidia-smi || true
        echo '```'
        echo
        echo "| step | result | seconds |"
        echo "|---|---|---:|"
        printf '%s\n' "${ROWS[@]}"
        echo
        printf '%s\n' "${SECTIONS[@]}"
        echo "State and full logs: $WORK. Scoring runs on the CPU (Spark's Python workers); the"
        echo "champion alias is set by the check itself (evaluation is not part of it)."
    } >"$OUT"
    echo "[gpu_check] wrote $OUT"
}
trap write_report EXIT

step "model bench" 150 '^\||Goal|model benchmark' \
    "$PY" bench/model.py --quick --device cuda --threads 4 || exit 1
step "generate" 60 '^\[generate\] wrote' \
    "${DUIA[@]}" generate --out "$RAW" --users 1500 --items 400 --days 6 --seed 11 \
    --formats parquet "${CONF[@]}" || exit 1
step "ingest" 60 '^\[ingest\]' "${DUIA[@]}" ingest --path "$RAW" "${CONF[@]}" || exit 1
step "backfill" 90 '^\[backfill\]|done in' \
    "${DUIA[@]}" backfill --date "$FIRST" --end-date "$NIGHT" "${CONF[@]}" || exit 1
step "training" 150 '^\[train\]|samples/s|cuda|nccl|Error' \
    "${DUIA[@]}" train --date "$NIGHT" --cold-start "${CONF[@]}" || exit 1
step "champion alias" 30 'champion' "$PY" "$WORK/set_champion.py" "$WORK/gpu.yaml" || exit 1
step "scoring" 90 '^\[score\]' "${DUIA[@]}" score --date "$NIGHT" "${CONF[@]}" || exit 1
