#!/usr/bin/env bash
# What a lent GPU machine lacks, packed here and unpacked there (the device tool's `run`; its machine has
# Python 3.12 with torch, numpy, OpenCV, scikit-*, onnx(runtime) but no package index and no ../shared).
#   bash bench/gpu_kit.sh prepare   # here: .gpu/whl (wheels for cp312 manylinux), .gpu/neu-det (the data)
#   bash bench/gpu_kit.sh aside     # here, just before `run`: bundles the GPU work does not read moved to
#                                   # .gpu-aside/ (the working tree that travels must stay under 64 MiB)
#   bash bench/gpu_kit.sh back      # here, right after: the bundles put back (git checkout for safety)
#   bash bench/gpu_kit.sh install   # there, first in the command: wheels to /tmp/site, STEEL_DATA set
# The `run` call: carry [".gpu"], command
#   source bench/gpu_kit.sh install && OUT=$OUT bash bench/gpu_session.sh 7 6
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEELS="albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16 pydantic==2.14.4
pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 pycocotools==2.0.11
ensemble-boxes==1.0.9 SQLAlchemy==2.1.9 alembic==1.20.1 Mako==1.4.3 defusedxml==0.7.1"
KEEP="neu-yolo-n"  # the bundle bench/gpu_check.py loads

prepare() {
  mkdir -p .gpu/whl .gpu/neu-det
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  grep -qx '/.gpu-aside/' .git/info/exclude || echo '/.gpu-aside/' >> .git/info/exclude
  for w in $WHEELS; do
    [ -n "$(ls .gpu/whl | grep -i "^$(echo "${w%%==*}" | tr - _)-" || true)" ] && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .gpu/whl "$w"
  done
  data="${STEEL_DATA:-../shared/datasets/neu-det}"
  cp -r "$data/annotations" "$data/images" .gpu/neu-det/
  du -sh .gpu/whl .gpu/neu-det
}

aside() {
  mkdir -p .gpu-aside
  for d in models/*/; do
    name=$(basename "$d")
    [ "$name" = "$KEEP" ] || [ ! -f "$d/weights.safetensors" ] || mv "$d" ".gpu-aside/$name"
  done
  echo "moved aside: $(ls .gpu-aside | tr '\n' ' ')"
}

back() {
  for d in .gpu-aside/*/; do [ -d "$d" ] && mv "$d" "models/$(basename "$d")"; done
  rmdir .gpu-aside 2>/dev/null || true
  git checkout -- models  # whatever was not moved back, from the last commit
  git status --short models
}

install() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export STEEL_DATA="$PWD/.gpu/neu-det" PYTHONUNBUFFERED=1
  python3 -c "import albumentations, pycocotools, pydantic, sqlalchemy, torch; print('kit ok, torch', torch.__version__, 'cuda', torch.cuda.is_available())"
}

"${1:?prepare | aside | back | install}"
