#!/usr/bin/env bash
# Stage, beside the checkout, what one lease of a GPU machine needs (README, "On a lent GPU"): run here, on the
# machine that holds the profile's images, from the repository root:
#   bash workflow/gpu/prepare.sh [PROFILE]        (default paper-downstream)
# It writes .lease/ (kept out of git through .git/info/exclude), which the lease carries:
# - .lease/whl: wheels of the packages the device image lacks (pydantic, diffusers and what they need beyond the
#   image), at this environment's versions, for its Python 3.12 on manylinux x86-64; typing-extensions and
#   safetensors too, whose versions there are not known to meet pydantic's and diffusers' floors (the image
#   has torch, timm, numpy, pandas, scipy, scikit-learn, seaborn, huggingface-hub);
# - .lease/results: the generator's files the profile's downstream jobs read (each dataset's split and the
#   synthetic sets), copied from results/; run the generator's profile first, or `dvc pull` them.
# NO_WHEELS=1 skips the wheels (a rehearsal on a machine that has every package). PYTHON: the interpreter that has
# mgdm (default .venv/bin/python where it exists, else python3).
set -euo pipefail
profile=${1:-paper-downstream}
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # the README's venv
if [ -d .git ] && ! grep -qxF '/.lease*/' .git/info/exclude 2>/dev/null; then echo '/.lease*/' >> .git/info/exclude; fi
# made in .lease.tmp and renamed at the end: a failed prepare leaves no half .lease behind
rm -rf .lease.tmp
trap 'rm -rf .lease.tmp' EXIT
mkdir -p .lease.tmp/whl .lease.tmp/results
if [ -z "${NO_WHEELS:-}" ]; then
  pins=$($py -c "from importlib.metadata import version as v
print(' '.join(f'{p}=={v(p)}' for p in ('pydantic', 'pydantic-core', 'annotated-types', 'typing-inspection',
                                         'typing-extensions', 'diffusers', 'importlib-metadata', 'safetensors')))")
  # shellcheck disable=SC2086
  $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .lease.tmp/whl $pins
fi
# every file the profile's downstream jobs read, as the plan names them
$py - "$profile" <<'PY'
import shutil, sys
from pathlib import Path

from mgdm.config import load
from mgdm.workflow.plan import Plan

config = load("params.yaml", sys.argv[1])
plan = Plan(config, "params.yaml")
files = [plan.dataset_file(d) for d in config.profile.datasets]
files += [plan.paths("sample", dataset=d, set=s)[f"{s}.npz"] for d in config.profile.datasets
          for s in config.downstream_sets()]
missing = [f for f in files if not Path(f).exists()]
if missing:
    sys.exit(f"prepare: {missing[0]}: not found ({len(missing)} files missing); run the profile's generator first")
for f in files:
    Path(".lease.tmp", f).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(f, Path(".lease.tmp", f))
print(f"prepare: {len(files)} files of profile {sys.argv[1]!r} in .lease/results")
PY
rm -rf .lease
mv .lease.tmp .lease
du -sh .lease
