#!/usr/bin/env bash
# Installs the "interference" Jupyter kernel:
#   1. evcxr_jupyter 0.22.0 (cargo install --locked; about 5.5 minutes on 2 cores, once), unless
#      that version is already on PATH or in $CARGO_HOME/bin;
#   2. a Python venv (target/nb-venv) with pinned Jupyter client packages, used by the notebook
#      tests (tests/notebooks/run.py) and to pre-build the kernel's crate;
#   3. registers the kernel spec kernel/kernelspec/kernels/interference with Jupyter:
#      `--user` copies it into the user's Jupyter data dir (recording this checkout's path);
#      without it, the venv's jupyter finds it through JUPYTER_PATH (printed at the end);
#   4. pre-builds the notebook crate (kernel/nb, the library and candle) once in the kernel's
#      fixed build dir target/evcxr-nb, so that a kernel's first cell takes seconds, not minutes.
# Usage: kernel/install.sh [--user] [--no-prebuild]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

EVCXR_VERSION=0.22.0
user_install=0
prebuild=1
for arg in "$@"; do
  case "$arg" in
    --user) user_install=1 ;;
    --no-prebuild) prebuild=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "kernel/install.sh: unknown argument $arg (use --user, --no-prebuild)" >&2; exit 2 ;;
  esac
done

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
evcxr_bin=""
for candidate in "${EVCXR_JUPYTER:-}" "$cargo_bin/evcxr_jupyter" "$(command -v evcxr_jupyter || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    # evcxr_jupyter has no --version; cargo's install record names the version it installed.
    evcxr_bin="$candidate"
    break
  fi
done
installed_version() {
  # `cargo install --list` prints "evcxr_jupyter v0.22.0:".
  cargo install --list 2>/dev/null | sed -n 's/^evcxr_jupyter v\([0-9.]*\):$/\1/p'
}
if [ -z "$evcxr_bin" ] || { [ "$evcxr_bin" = "$cargo_bin/evcxr_jupyter" ] && [ "$(installed_version)" != "$EVCXR_VERSION" ]; }; then
  echo "== installing evcxr_jupyter $EVCXR_VERSION (cargo install --locked; about 5.5 min on 2 cores)"
  cargo install evcxr_jupyter --locked --version "$EVCXR_VERSION"
  evcxr_bin="$cargo_bin/evcxr_jupyter"
else
  echo "== evcxr_jupyter: $evcxr_bin"
fi

# evcxr asks rust-analyzer for the types of a cell's variables; without the standard library's
# source it cannot see through `?` and guesses wrong types.
if command -v rustup >/dev/null 2>&1; then
  rustup component add rust-src >/dev/null 2>&1 || echo "warning: could not add rust-src; evcxr's type inference will be weaker" >&2
fi

venv="$repo/target/nb-venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet -r "$repo/tests/notebooks/requirements.txt"

spec="$repo/kernel/kernelspec/kernels/interference"
if [ "$user_install" = 1 ]; then
  staged=$(mktemp -d)
  trap 'rm -rf "$staged"' EXIT
  cp -rL "$spec" "$staged/interference"
  printf '%s\n' "$repo" > "$staged/interference/repo-path"
  "$venv/bin/jupyter" kernelspec install --user --replace --name interference "$staged/interference" >/dev/null
  echo "== registered kernel 'interference' for this user (jupyter kernelspec list)"
else
  echo "== kernel spec: $spec (found by Jupyter with JUPYTER_PATH=$repo/kernel/kernelspec)"
fi
JUPYTER_PATH="$repo/kernel/kernelspec${JUPYTER_PATH:+:$JUPYTER_PATH}" "$venv/bin/jupyter" kernelspec list 2>/dev/null \
  | grep -q '^ *interference ' || { echo "kernel/install.sh: jupyter does not list the kernel 'interference'" >&2; exit 1; }

if [ "$prebuild" = 1 ]; then
  echo "== pre-building the notebook crate in target/evcxr-nb (minutes the first time, seconds after)"
  EVCXR_JUPYTER="$evcxr_bin" "$venv/bin/python" "$repo/kernel/prebuild.py"
fi
echo "== done. Open the notebooks with the kernel 'Rust (interference)':"
[ "$user_install" = 1 ] || echo "   export JUPYTER_PATH=$repo/kernel/kernelspec"
echo "   then open notebooks/ in any Jupyter front end (e.g. JupyterLab), or run them all:"
echo "   $venv/bin/python tests/notebooks/run.py"
