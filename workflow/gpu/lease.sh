#!/usr/bin/env bash
# One lease of a GPU machine, in one call (README, "On a lent GPU"), from the repository root there, with
# .lease/ carried (workflow/gpu/prepare.sh makes it):
#   bash workflow/gpu/lease.sh
# 1. installs the carried wheels and puts this checkout's src/ on the path (the image has torch and timm);
# 2. puts the profile's images in results/;
# 3. `mgdm benchmark --device cuda`: the grid trainer's step per network against the old loop's and the
#    card's measured bf16 peak (bounded by BENCH_S seconds);
# 4. `mgdm jobs`: the profile's downstream grid, a worker per network (bounded by JOBS_S seconds; groups not
#    started by DEADLINE_MIN are left whole; runs already finished here, e.g. carried from an earlier lease,
#    are skipped);
# 5. packs every finished run's metrics JSON and test predictions into $OUT/runs.tar.gz (not resume states).
# Then, here: git show HEAD:results/paper-downstream/tables/downstream.md > legacy.md (the first GPU runs' cells),
# tar xzf runs.tar.gz && mgdm report --profile paper-downstream, and
# mgdm compare-runs results/paper-downstream/records legacy.md (README).
# Settings: PROFILE (paper-downstream), DEVICE (cuda), WORKERS (10), BENCH_S (150), JOBS_S (420),
# DEADLINE_MIN (4), OUT (the device tool's; /tmp/lease-out elsewhere), PYTHON (python3).
set -uo pipefail
out=${OUT:-/tmp/lease-out}
profile=${PROFILE:-paper-downstream}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out"
exec > >(tee "$out/lease.log") 2>&1
start=$SECONDS
if compgen -G ".lease/whl/*.whl" > /dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .lease/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" MGDM_NO_MLFLOW=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$py -c "import torch, timm, diffusers, pydantic
print('lease: torch', torch.__version__, 'timm', timm.__version__, 'diffusers', diffusers.__version__,
      'pydantic', pydantic.__version__, 'on', torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')" \
  || exit 1
cp -r .lease/results/. results/
timeout "${BENCH_S:-150}" $py -m mgdm.cli benchmark --profile "$profile" --device "$device" -o "$out/bench.json"
echo "lease: benchmark exit $? at $((SECONDS - start)) s"
timeout "${JOBS_S:-420}" $py -m mgdm.cli jobs --profile "$profile" --device "$device" --workers "${WORKERS:-10}" \
  --deadline-min "${DEADLINE_MIN:-4}"
echo "lease: jobs exit $? at $((SECONDS - start)) s"
find "results/$profile" -path '*/downstream/*' \( -name 'seed*_test.npz' -o -name 'seed*.json' ! -name '*.resume.json' \) \
  | tar czf "$out/runs.tar.gz" -T -
echo "lease: $(tar tzf "$out/runs.tar.gz" | grep -c 'json$') finished runs in $out/runs.tar.gz, $((SECONDS - start)) s in all"
