"""The documentation site as static HTML, from PyPI packages only: `make docs` runs the three steps.

1. `proc`: nbdev processes the notebooks into _proc/ (its `proc_nbs`, as `nbdev_proc_nbs` does, without the latter's
   attempt to install Quarto with sudo and to `pip install -e .` when no `quarto` is on the PATH).
2. `docs/execute_lessons.py _proc` gives the chapters' lessons their outputs.
3. `html`: nbconvert (a JupyterLab dependency, in requirements.lock) turns every notebook into a page; links between
   notebooks (`60_uga.ipynb#...`) become links between pages, and every page gets the same navigation bar: the
   index, the chapters in order, the experiment notebooks.
The Quarto site (`make docs-quarto`) looks richer but needs the Quarto binary, which PyPI does not carry.

Usage: python docs/render_html.py proc | html [_proc] [_docs]
"""
import html
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

LINK = re.compile(r'href="(?![a-z]+://)([^"#]*?)\.ipynb(#[^"]*)?"')


def pages(proc: Path) -> list[Path]:
    """Every processed notebook, relative to `proc`: the index first, then chapters, then experiments."""
    found = sorted(p.relative_to(proc) for p in proc.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return sorted(found, key=lambda p: (p.name != "index.ipynb", len(p.parts), str(p)))


def title(nb) -> str:
    """The notebook's title: nbdev's front matter (a raw cell), else its first heading, else ''."""
    for cell in nb.cells:
        if cell.cell_type == "raw":
            m = re.search(r"^title:\s*(.+)$", cell.source, re.M)
            if m: return m.group(1).strip().strip("'\"")
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m: return m.group(1).strip()
    return ""


def nav_bar(here: Path, entries: list[tuple[Path, str]]) -> str:
    """Links to every page, relative to the page `here`."""
    up = "../" * (len(here.parts) - 1)
    links = " · ".join(f'<a href="{up}{p.with_suffix(".html").as_posix()}">{html.escape(t or p.stem)}</a>'
                       for p, t in entries)
    return f'<nav style="padding:0.6em 1em;border-bottom:1px solid #ccc;font:14px sans-serif">{links}</nav>'


def render(proc: Path, out: Path) -> list[Path]:
    """Write one HTML page per processed notebook under `out`; return the pages written."""
    todo = pages(proc)
    if not todo: sys.exit(f"{proc}: no processed notebooks (run nbdev_proc_nbs first)")
    books = {p: nbformat.read(proc / p, as_version=4) for p in todo}
    entries = [(p, title(nb)) for p, nb in books.items()]
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    if out.exists(): shutil.rmtree(out)
    written = []
    for p, nb in books.items():
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title(nb) or p.stem}})
        body = LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav_bar(p, entries), body, count=1)
        target = out / p.with_suffix(".html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def process() -> Path:
    """nbdev's processing of every notebook under nbs/ into _proc/ (show_doc, directives)."""
    from nbdev.serve import proc_nbs
    return proc_nbs(file_re=r"\.(?:ipynb|qmd|html)$", force=True)


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else ""
    if step == "proc":
        print(f"processed notebooks in {process()}")
    elif step == "html":
        proc = Path(sys.argv[2] if len(sys.argv) > 2 else "_proc")
        out = Path(sys.argv[3] if len(sys.argv) > 3 else "_docs")
        done = render(proc, out)
        print(f"{len(done)} pages in {out}/ (open {out / 'index.html'})")
    else:
        sys.exit("usage: python docs/render_html.py proc | html [_proc] [_docs]")
