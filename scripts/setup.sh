#!/usr/bin/env bash
# One-step set-up of napari-cxdi on a fresh machine (idempotent; quick when already done).
#  - system libraries for Qt under a virtual display (Xvfb), when run as root on Debian/Ubuntu;
#  - PyTorch: the CPU build when no NVIDIA GPU is present (never the multi-GB CUDA wheels),
#    the default (CUDA) build when `nvidia-smi` finds a GPU; override with TORCH_SPEC / TORCH_INDEX_URL;
#  - napari-cxdi itself in editable mode with the [all] (PyQt6, QM9) and [test] extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && ! command -v Xvfb >/dev/null 2>&1; then
  echo "[setup] installing Xvfb and Qt's X11 libraries (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 \
    libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxcb-shape0 libxcb-randr0 libxcb-cursor0 \
    libxcb-image0 libdbus-1-3 libfontconfig1 >/dev/null
fi

TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: installing $TORCH_SPEC (CUDA build)"
    "$PYTHON" -m pip install -q "$TORCH_SPEC"
  elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    echo "[setup] no GPU: installing $TORCH_SPEC (CPU build) from $TORCH_INDEX_URL"
    "$PYTHON" -m pip install -q "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  else
    echo "[setup] no GPU: installing $TORCH_SPEC (CPU build from the configured package index)"
    "$PYTHON" -m pip install -q "$TORCH_SPEC"
  fi
fi
echo "[setup] installing napari-cxdi[all,test] (editable)"
"$PYTHON" -m pip install -q -e ".[all,test]" 2>&1 | grep -v -E "^(WARNING: Running pip as|\[notice\])" || true
"$PYTHON" -c "import napari_cxdi, torch; print('[setup] napari-cxdi', napari_cxdi.__version__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
