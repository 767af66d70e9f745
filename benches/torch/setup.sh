#!/usr/bin/env bash
# Creates (or completes) a Python venv with PyTorch for CPU, numpy and safetensors at
# target/torch-venv (git-ignored), for benches/torch/twin.py. Idempotent: a venv that already
# imports everything is left as it is. Prints the venv's python path at the end.
#
#   bash benches/torch/setup.sh            # TORCH_VENV=/elsewhere to put it elsewhere
#   TORCH_VERSION=2.15.0 bash benches/torch/setup.sh
#
# The CPU-only wheels live on download.pytorch.org and are used when that host answers. The
# lab's machines reach only PyPI, whose Linux x86_64 `torch` wheel is the CUDA build: it cannot
# even be imported without its nvidia-* runtime wheels (libtorch_cuda.so links libcudart,
# libcublas, libcudnn, libnccl, ... at load time; `--no-deps` fails with "libcudart.so.13: cannot
# open shared object file"), so there it is installed with all its dependencies (about 3 GB of
# downloads, 5 GB on disk). It runs on the CPU without a GPU all the same.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${TORCH_VENV:-$root/target/torch-venv}"
version="${TORCH_VERSION:-}"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi
pip=("$py" -m pip install --disable-pip-version-check --quiet)

if "$py" -c 'import torch, numpy, safetensors.torch' 2>/dev/null; then
    echo "torch venv ready: $("$py" -c 'import torch; print("torch", torch.__version__)')" >&2
    echo "$py"
    exit 0
fi

spec="torch${version:+==$version}"
if ! "$py" -c 'import torch' 2>/dev/null; then
    if curl -s --max-time 5 -o /dev/null https://download.pytorch.org/whl/cpu/ 2>/dev/null; then
        echo "installing $spec (CPU wheel from download.pytorch.org)" >&2
        "${pip[@]}" "$spec" --index-url https://download.pytorch.org/whl/cpu
    else
        echo "download.pytorch.org unreachable: installing PyPI's $spec with its CUDA runtime wheels (~3 GB)" >&2
        "${pip[@]}" "$spec"
    fi
fi
"${pip[@]}" numpy safetensors
"$py" -c 'import torch, numpy, safetensors.torch; x = torch.randn(4, 4, requires_grad=True); (x @ x).sum().backward(); print("torch", torch.__version__, "works on the CPU")' >&2
echo "$py"
