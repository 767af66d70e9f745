#!/usr/bin/env python3
"""Runs every notebook in notebooks/ through the real "interference" kernel (evcxr) with
Jupyter's own client (nbclient), and checks what each cell showed.

A notebook fails on
  - any `error` output (compile errors, a dead runtime),
  - any stream text containing `panicked at` (evcxr reports a panic, or a `?` error, only as
    stderr text, with status "ok"),
  - any stderr text in a cell not tagged `allow-stderr`,
  - a cell tagged `expect-image` with no image/svg+xml or image/png output,
  - a timeout or a dead kernel.
Executed notebooks are saved under target/notebooks-out/. The last line is `N passed, N failed`;
the exit code is 1 if any failed.

Usage: target/nb-venv/bin/python tests/notebooks/run.py [NOTEBOOK.ipynb ...]
Environment: EVCXR_TMPDIR (default target/evcxr-nb) and XDG_CACHE_HOME (default
target/evcxr-cache) are set for the kernel, so runs after the first are warm.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
OUT = REPO / "target" / "notebooks-out"
KERNEL = "interference"
IMAGE_TYPES = ("image/svg+xml", "image/png")
PANIC = re.compile(r"panicked at")


def environment() -> None:
    """Points Jupyter at the repository's kernel spec and the kernel at fixed build dirs."""
    spec = str(REPO / "kernel" / "kernelspec")
    paths = [spec] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != spec]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    os.environ.setdefault("EVCXR_TMPDIR", str(REPO / "target" / "evcxr-nb"))
    os.environ.setdefault("XDG_CACHE_HOME", str(REPO / "target" / "evcxr-cache"))
    for var in ("EVCXR_TMPDIR", "XDG_CACHE_HOME"):
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)


def text_of(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def check_cell(index: int, cell) -> list[str]:
    """The problems one executed code cell shows."""
    problems = []
    tags = set(cell.get("metadata", {}).get("tags", []))
    first_line = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
    where = f"cell {index} ({first_line!r})"
    has_image = False
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "error":
            value = re.sub(r"\x1b\[[0-9;]*m", "", out.get("evalue", ""))
            problems.append(f"{where}: error output: {out.get('ename', '')}: {value.strip()[:2000]}")
        elif kind == "stream":
            text = text_of(out)
            if PANIC.search(text):
                problems.append(f"{where}: panicked: {text.strip()[:2000]}")
            elif out.get("name") == "stderr" and "allow-stderr" not in tags and text.strip():
                problems.append(f"{where}: stderr: {text.strip()[:2000]}")
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            has_image |= any(t in data for t in IMAGE_TYPES)
    if "expect-image" in tags and not has_image:
        problems.append(f"{where}: tagged expect-image but shows no image/svg+xml or image/png")
    return problems


def run(path: Path) -> tuple[list[str], dict]:
    """Executes one notebook; returns its problems and timings (seconds from kernel start)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=1200,
        startup_timeout=900,
        allow_errors=True,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    problems: list[str] = []
    timing: dict = {"cells": []}
    start = time.monotonic()
    try:
        with client.setup_kernel():
            timing["kernel_ready"] = time.monotonic() - start
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                client.execute_cell(cell, index)
                timing["cells"].append((index, time.monotonic() - start))
                problems += check_cell(index, cell)
    except CellTimeoutError as e:
        problems.append(f"timeout: {str(e).strip()[:500]}")
    except DeadKernelError as e:
        problems.append(f"kernel died: {e}")
    except RuntimeError as e:  # e.g. the kernel did not start within startup_timeout
        problems.append(f"kernel: {e}")
    timing["total"] = time.monotonic() - start
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / path.name)
    return problems, timing


def main(argv: list[str]) -> int:
    environment()
    paths = [Path(a).resolve() for a in argv] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print("no notebooks found")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    began = time.monotonic()
    for path in paths:
        print(f"--- {path.name}", flush=True)
        problems, timing = run(path)
        cells = timing["cells"]
        # The first code cell is the `:dep` cell; the second is the first to use the crate.
        first_use = f"{cells[1][1]:.1f} s" if len(cells) > 1 else "n/a"
        ready = timing.get("kernel_ready")
        print(
            f"    kernel ready {ready:.1f} s, first cell using the crate done at {first_use}, "
            f"notebook {timing['total']:.1f} s ({len(cells)} code cells)"
            if ready is not None
            else f"    kernel did not start ({timing['total']:.1f} s)",
            flush=True,
        )
        if problems:
            failed += 1
            print(f"FAIL {path.name}")
            for p in problems:
                print("    " + p.replace("\n", "\n    "))
        else:
            passed += 1
            print(f"ok   {path.name}")
    print(f"notebooks: {time.monotonic() - began:.1f} s; executed copies in {OUT.relative_to(REPO)}/")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
