#!/usr/bin/env python3
"""Builds the notebook crate (kernel/nb) once in the kernel's fixed build dir, so that the
first cell of a later session is warm, and reports how long it took.

It starts the "interference" kernel with Jupyter's client, runs the notebooks' setup cells
(`:dep interference_nb = { path = ... }`, then a cell that uses the crate) and prints
`kernel start → first cell using the crate: S s`. Run by kernel/install.sh; run it again to
measure a warm start. Build dirs: as tests/notebooks/run.py (the kernel's first free slot
target/evcxr-nb…, and XDG_CACHE_HOME=target/evcxr-cache).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "notebooks"))
import run as harness  # noqa: E402  (the notebook harness: same environment and checks)


def main() -> int:
    harness.environment()
    nb = new_notebook(
        cells=[
            # The absolute form of the notebooks' "../kernel/nb": evcxr canonicalises the
            # path, so both build the same crate in the same dir.
            new_code_cell(f':dep interference_nb = {{ path = "{REPO / "kernel" / "nb"}" }}'),
            new_code_cell(
                "use interference_nb::prelude::*;\n"
                'let langs = LangSet::parse(&["aa", "bb"])?;\n'
                'println!("{} languages: {langs}", langs.len());'
            ),
        ],
        metadata={"kernelspec": {"name": harness.KERNEL, "display_name": "Rust (interference)", "language": "rust"}},
    )
    path = REPO / "target" / "prebuild.ipynb"
    nbformat.write(nb, path)
    try:
        problems, timing = harness.run(path)
    finally:
        path.unlink(missing_ok=True)
        (harness.OUT / path.name).unlink(missing_ok=True)
    cells = timing["cells"]
    if problems or len(cells) < 2:
        print("prebuild failed:", *problems, sep="\n  ")
        return 1
    print(
        f"kernel start → kernel ready: {timing['kernel_ready']:.1f} s; "
        f"→ :dep cell done: {cells[0][1]:.1f} s; → first cell using the crate: {cells[1][1]:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
