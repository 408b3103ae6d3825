#!/usr/bin/env bash
# Build the avsm wheel, install it (not editable) in a fresh virtual environment and register the bundled
# sample pair with both bundled networks from an unrelated folder: the package must carry its weights,
# manifest and sample data, and must not need the source tree.
#
# The fresh environment reuses torch and the other dependencies of .venv instead of downloading them again:
# a .pth file adds .venv's site-packages to its path. Python reads .pth files only in its own site folders,
# so .venv's editable install of avsm (a .pth file in .venv's site-packages) stays inactive there, and the
# only avsm the fresh environment can import is the wheel's. The script checks that.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-$PWD/.venv/bin/python}"  # a venv's own python (not resolved: the link is the venv)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Build from a copy of the files git knows (tracked, or untracked and not ignored): no stale build/ output
# of an earlier layout can enter the wheel.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
  | xargs -0 cp --parents -t "$work/src"
# Offline with .venv's setuptools when it is recent enough (>= 77), else pip's isolated build fetches one.
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" "$work/src" >/dev/null 2>&1 \
  || "$python" -m pip wheel --quiet --no-deps -w "$work/dist" "$work/src" >/dev/null

"$python" -m venv "$work/venv"
fresh="$work/venv/bin/python"
"$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
  > "$("$fresh" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_avsm_dependencies.pth"
"$fresh" -m pip install --quiet --no-deps --no-index "$work"/dist/avsm-*.whl

mkdir "$work/elsewhere"
cd "$work/elsewhere"
unset PYTHONPATH
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
sample="$("$fresh" -c '
import avsm, sys
from importlib import resources
assert avsm.__file__.startswith(sys.prefix), f"avsm imported from {avsm.__file__}, not the installed wheel"
print(resources.files("avsm") / "sample_data")')"
for method in avsm voxelmorph; do
  "$work/venv/bin/avsm" register "$sample/fixed_t1_2mm.nii.gz" "$sample/moving_t1_2mm.nii.gz" --method "$method" \
    --device cpu --working-spacing 4 --progress none -o "out_$method" >/dev/null
  for file in transform.h5 affine.tfm inverse.h5 warped.nii.gz jacobian.nii.gz folds.nii.gz grid.png report.json; do
    [ -s "out_$method/$file" ] || { echo "wheel test: avsm register --method $method wrote no $file" >&2; exit 1; }
  done
  "$fresh" -c "
import json, sys
report = json.load(open('out_$method/report.json'))
assert report['method'] == '$method' and report['model'], report
print(f\"wheel test: --method $method with the bundled {report['model']}: {report['timings']['total']:.1f} s\")"
done
