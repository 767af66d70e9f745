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

Usage: target/nb-venv/bin/python tests/notebooks/run.py [--self-test] [NOTEBOOK.ipynb ...]
  --self-test  first run tests/notebooks/selftest.ipynb, whose cells each carry the problem
               the harness must report for them (compile error, panic, stderr, missing image,
               or none), and stop if any is missed or wrongly reported.
Build dirs, all under target/: the kernel's launch.sh gives evcxr the first free slot of
target/evcxr-nb, target/evcxr-nb-2, … (locked while a kernel uses it; EVCXR_TMPDIR overrides),
and the harness sets XDG_CACHE_HOME=target/evcxr-cache for evcxr's `:cache`. Runs after the
first (or after kernel/install.sh) are warm.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
OUT = REPO / "target" / "notebooks-out"
KERNEL = "interference"
IMAGE_TYPES = ("image/svg+xml", "image/png")
PANIC = re.compile(r"panicked at")
# evcxr forwards a cell's output lines from a separate thread and tags each with the request
# current when it is sent, so the last lines of a cell (a panic's backtrace, say) can arrive
# after its reply and would be shown under the next cell. After each cell the harness keeps
# reading until the kernel has been quiet this long, and files what comes under that cell.
LATE_OUTPUT_QUIET_S = 0.25


def environment() -> None:
    """Points Jupyter at the repository's kernel spec and evcxr's cache under target/."""
    spec = str(REPO / "kernel" / "kernelspec")
    paths = [spec] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != spec]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    os.environ.setdefault("XDG_CACHE_HOME", str(REPO / "target" / "evcxr-cache"))
    Path(os.environ["XDG_CACHE_HOME"]).mkdir(parents=True, exist_ok=True)


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
    streams = {"stdout": "", "stderr": ""}
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "error":
            value = re.sub(r"\x1b\[[0-9;]*m", "", out.get("evalue", "")).strip()[:2000]
            problem = f"{where}: error output: {out.get('ename', '')}: {value}"
            if problem not in problems:  # evcxr may send the same error twice
                problems.append(problem)
        elif kind == "stream":
            name = out.get("name", "stdout")
            streams[name] = streams.get(name, "") + text_of(out)
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            has_image |= any(t in data for t in IMAGE_TYPES)
    # evcxr sends one stream message per line: judge each stream as a whole.
    for name, text in streams.items():
        lines = text.splitlines()
        panic = next((i for i, line in enumerate(lines) if PANIC.search(line)), None)
        if panic is not None:
            problems.append(f"{where}: panicked ({name}): " + "\n".join(lines[panic : panic + 3]))
        elif name == "stderr" and "allow-stderr" not in tags and text.strip():
            shown = "\n".join(lines[:10]) + ("\n…" if len(lines) > 10 else "")
            problems.append(f"{where}: stderr (tag the cell allow-stderr if expected):\n{shown}")
    if "expect-image" in tags and not has_image:
        problems.append(f"{where}: tagged expect-image but shows no image/svg+xml or image/png")
    return problems


def collect_late_output(client: NotebookClient, cell) -> None:
    """Appends to `cell` the stream lines that arrive after its reply (see LATE_OUTPUT_QUIET_S):
    nothing else is running, so they are its own."""
    get = run_sync(client.kc.get_iopub_msg)
    while True:
        try:
            msg = get(timeout=LATE_OUTPUT_QUIET_S)
        except Exception:  # queue.Empty: quiet long enough
            return
        if msg["msg_type"] == "stream":
            content = msg["content"]
            cell.outputs.append(new_output("stream", name=content["name"], text=content["text"]))


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
                collect_late_output(client, cell)
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


def self_test() -> bool:
    """Runs selftest.ipynb and checks that each cell gets exactly the problem it expects."""
    path = Path(__file__).resolve().parent / "selftest.ipynb"
    print(f"--- self-test: {path.name}", flush=True)
    problems, _ = run(path)
    nb = nbformat.read(OUT / path.name, as_version=4)
    ok = True
    for index, cell in enumerate(nb.cells):
        expect = cell.get("metadata", {}).get("selftest")
        if expect is None:
            continue
        mine = [p for p in problems if p.startswith(f"cell {index} ")]
        markers = {"error": ": error output", "panicked": ": panicked", "stderr": ": stderr", "expect-image": "tagged expect-image"}
        kinds = {kind for kind, marker in markers.items() for p in mine if marker in p}
        want = set() if expect == "ok" else {expect}
        if kinds != want:
            ok = False
            print(f"    self-test cell {index}: expected {sorted(want) or 'no problem'}, harness reported {mine or 'none'}")
    print("    self-test " + ("ok: every planted problem was reported, and nothing else" if ok else "FAILED"))
    return ok


def main(argv: list[str]) -> int:
    environment()
    if "--self-test" in argv:
        argv = [a for a in argv if a != "--self-test"]
        if not self_test():
            print("0 passed, 1 failed")
            return 1
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
