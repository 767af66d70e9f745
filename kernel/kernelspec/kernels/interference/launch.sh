#!/bin/sh
# Starts evcxr_jupyter for the "interference" kernel (kernel.json runs this with the
# connection file). Settings, each overridable from the environment:
#   EVCXR_JUPYTER     the evcxr_jupyter binary (default: $CARGO_HOME/bin, then PATH)
#   EVCXR_CONFIG_DIR  evcxr's config (default: config/ beside this script: init.evcxr)
#   EVCXR_TMPDIR      where evcxr keeps its crate and build (default: a warm slot under the
#                     repository's target/, see below)
# A fixed EVCXR_TMPDIR keeps the notebook crate built between sessions (warm start in seconds
# instead of minutes), but one evcxr may use it at a time. So unless EVCXR_TMPDIR is given,
# this takes the first free slot of target/evcxr-nb, target/evcxr-nb-2, … (held with flock
# for the kernel's life); each slot is cold once, then warm.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/repo-path" ]; then
  repo=$(cat "$here/repo-path")            # written by kernel/install.sh into an installed copy
else
  repo=$(cd "$here/../../../.." && pwd)    # kernel/kernelspec/kernels/interference in a checkout
fi
export EVCXR_CONFIG_DIR="${EVCXR_CONFIG_DIR:-$here/config}"

if [ -z "${EVCXR_TMPDIR:-}" ]; then
  slots="$repo/target/evcxr-nb"
  mkdir -p "$slots"
  if command -v flock >/dev/null 2>&1; then
    n=1
    while :; do
      dir="$slots"; [ "$n" -gt 1 ] && dir="$slots-$n"
      mkdir -p "$dir"
      exec 9>"$dir.lock"
      if flock -n 9; then break; fi
      exec 9>&-
      n=$((n + 1))
    done
  else
    dir="$slots"
  fi
  export EVCXR_TMPDIR="$dir"
fi

jupyter_bin="${EVCXR_JUPYTER:-}"
if [ -z "$jupyter_bin" ]; then
  if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/evcxr_jupyter" ]; then
    jupyter_bin="${CARGO_HOME:-$HOME/.cargo}/bin/evcxr_jupyter"
  else
    jupyter_bin=evcxr_jupyter
  fi
fi
exec "$jupyter_bin" --control_file "$1"
