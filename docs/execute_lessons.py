"""Give the chapters that nbdev processed for the documentation site the outputs of their lessons.

`make docs` runs it between `nbdev_proc_nbs` (notebooks -> _proc/) and `quarto render` (_proc/ -> _docs/). The
notebooks are committed without outputs (results are regenerated, never stored), so without this step the site
would show code without values. Cells run as `nbdev_test` runs them: in the notebook's source folder, skipping the
cells flagged with settings.ini's `tst_flags` and `#| eval: false`; the experiment notebooks (nbs/experiments/, kept
out of nbdev_test by `.notest`) are not executed: they train networks, and their tables live under results/.

Usage: python docs/execute_lessons.py [_proc]
"""
import os
import sys
import time
from contextlib import chdir
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.config import get_config


def directives(source: str) -> dict:
    """The `#| key value` lines at the top of a cell, as {key: value}."""
    out = {}
    for line in source.splitlines():
        if not line.startswith("#|"): break
        key, _, value = line[2:].strip().partition(" ")
        out[key] = value.strip()
    return out


def skip_cell(flags: set):
    """A preproc for CaptureShell.run_all: True for cells nbdev_test would not run either."""
    def _skip(cell) -> bool:
        if cell.cell_type != "code": return True
        direc = directives(cell.source)
        return direc.get("eval:", "").lower() == "false" or bool(flags & set(direc))
    return _skip


def executed_outputs(source_nb: Path, flags: set) -> dict:
    """Run a source notebook as nbdev_test does (in its folder); return {cell id: outputs}."""
    nb = read_nb(source_nb)
    shell = CaptureShell(source_nb)
    with chdir(source_nb.parent):
        shell.run_all(nb, exc_stop=True, preproc=skip_cell(flags))
    return {c.id: c.outputs for c in nb.cells if c.cell_type == "code" and c.get("id") and c.get("outputs")}


def add_outputs(proc_nb: Path, source_nb: Path, flags: set) -> int:
    """Copy the outputs of the executed source cells into the processed notebook (matched by cell id)."""
    outputs, nb, n = executed_outputs(source_nb, flags), read_nb(proc_nb), 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("id") in outputs and not cell.get("outputs"):
            cell.outputs, n = outputs[cell.id], n + 1
    write_nb(nb, proc_nb)
    return n


def main(proc: Path) -> None:
    cfg = get_config()
    flags = set(cfg.get("tst_flags", "").split())
    os.environ.setdefault("REID_NB_PROGRESS", "0")
    notebooks = sorted(p for p in proc.glob("*.ipynb"))  # the top level only: chapters and index, not experiments/
    if not notebooks: sys.exit(f"{proc}: no processed notebooks (run nbdev_proc_nbs first)")
    for nb in notebooks:
        start = time.time()
        n = add_outputs(nb, cfg.nbs_path / nb.name, flags)
        print(f"{nb.name}: {n} cells with outputs ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "_proc").resolve())
