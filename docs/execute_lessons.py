"""Give the library notebooks the outputs of their lessons, in place: `make lessons` runs it.

The library notebooks (nbs/*.ipynb) are committed with their outputs, nbdev's convention (settings.ini keeps
`clear_all = False`), so a chapter reads on a code host, in JupyterLab and in the docs site without running anything.
Cells run as `nbdev_test` runs them: in the notebook's folder, with IN_TEST set, skipping the cells flagged with
settings.ini's `tst_flags` and `#| eval: false` (those keep no output). The outputs are made machine-independent
(the repository's folder and temporary folders are written as relative or `<tmp>` paths, durations as `…`;
progress bars are off), figures over 150 kB are stored as JPEG, and `nbdev_clean` then strips execution counts and
metadata. A notebook whose lesson raises is left as it was. The experiment notebooks (nbs/experiments/) are not
touched: they train networks and are committed clean.

Usage: python docs/execute_lessons.py [NOTEBOOK ...]   (default: every library notebook)
"""
import base64
import io
import os
import re
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.clean import nbdev_clean
from nbdev.config import get_config
from PIL import Image

TMP = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[\w.-]+")
LARGE_PNG = 200_000  # characters of base64: larger figures are stored as JPEG
# Durations and speeds differ from run to run and machine to machine: written as `…` (the unit stays).
TIMINGS = [(re.compile(r"\d+(?:\.\d+)? (s/epoch|img/s)"), r"… \1"), (re.compile(r"ETA (?:\d+[hms])+"), "ETA …"),
           (re.compile(r"(?<![\w.])\d+\.\d+ ?s\b(?!/)"), "… s")]


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


def machine_free(text: str, root: Path, folder: Path) -> str:
    """`text` without this machine's absolute paths (the notebook's folder is `.`, the repository relative to it,
    temporary folders `<tmp>`) and without durations."""
    for path, name in ((folder, "."), (root, os.path.relpath(root, folder))):
        text = text.replace(str(path) + "/", name + "/").replace(str(path), name)
    text = TMP.sub("<tmp>", text)
    for pattern, replacement in TIMINGS: text = pattern.sub(replacement, text)
    return text.replace(str(Path.home()) + "/", "~/")


def clean_outputs(cell, root: Path, folder: Path) -> None:
    """Make every text in the cell's outputs machine-independent."""
    def fix(value):
        if isinstance(value, str): return machine_free(value, root, folder)
        if isinstance(value, list): return [fix(v) for v in value]
        return value
    for out in cell.get("outputs", []):
        if "text" in out: out["text"] = fix(out["text"])
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/") or mime in ("image/svg+xml", "application/json"): out["data"][mime] = fix(value)


def compact_images(cell) -> None:
    """Large PNG figures (photographs of the synthetic world, at retina resolution) are stored as JPEG, which is
    a fifth of their size; the display size (the output's metadata) stays."""
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if len(data.get("image/png", "")) < LARGE_PNG: continue
        image = Image.open(io.BytesIO(base64.b64decode(data.pop("image/png"))))
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
        jpeg = io.BytesIO()
        flat.save(jpeg, "JPEG", quality=80, optimize=True)
        data["image/jpeg"] = base64.b64encode(jpeg.getvalue()).decode("ascii")
        meta = out.get("metadata", {})
        if "image/png" in meta: meta["image/jpeg"] = meta.pop("image/png")


def execute_in_place(path: Path, flags: set, root: Path) -> int:
    """Run the notebook's lessons and write it back with their outputs; return the number of cells with outputs."""
    nb = read_nb(path)
    for cell in nb.cells:
        if cell.cell_type == "code": cell.outputs = []
    with chdir(path.parent):
        CaptureShell(path).run_all(nb, exc_stop=True, preproc=skip_cell(flags))
    for cell in nb.cells:
        clean_outputs(cell, root, path.parent)
        compact_images(cell)
    write_nb(nb, path)
    nbdev_clean.__wrapped__(str(path))  # execution counts and metadata, as `nbdev_clean` (the function, not the CLI)
    return sum(1 for c in nb.cells if c.cell_type == "code" and c.get("outputs"))


def library_notebooks(nbs: Path) -> list[Path]:
    """The chapters and the index: nbs/*.ipynb, not the experiments."""
    return sorted(p for p in nbs.glob("*.ipynb") if p.name[0] not in "._")


def main(names: list[str]) -> None:
    cfg = get_config()
    flags = set(cfg.get("tst_flags", "").split())
    os.environ.setdefault("REID_NB_PROGRESS", "0")
    os.environ["IN_TEST"] = "1"
    todo = [Path(n).resolve() for n in names] or library_notebooks(cfg.nbs_path)
    failed = []
    for path in todo:
        start = time.time()
        try:
            n = execute_in_place(path, flags, cfg.config_path)
        except Exception as e:  # the notebook stays as it was; the others still run
            failed.append(path.name)
            print(f"{path.name}: FAILED ({type(e).__name__}: {e})", flush=True)
            continue
        print(f"{path.name}: {n} cells with outputs ({time.time() - start:.0f} s)", flush=True)
    if failed: sys.exit(f"lessons failed in {failed}")


if __name__ == "__main__":
    main(sys.argv[1:])
