"""The documentation site as static HTML, from PyPI packages only (no Quarto, no network): `make docs`.

It reads like nbdev's own site:
- every notebook is processed in memory as `nbdev_proc_nbs` would (nbdev's FilterDefaults: front matter, show_doc
  cells for exported names, hidden and exported cells dropped), then rendered with the Quarto directives honoured:
  front matter becomes the page's title and subtitle, `echo: false` hides the input, `output: false` the output,
  `output: asis` renders the output as Markdown, `hide` / `include: false` drop the cell, and a cell with a directive
  this renderer does not know is dropped (with a warning) rather than shown raw;
- pages: the index, the chapters (nbs/*.ipynb), the experiment notebooks (nbs/experiments/), the published results
  (docs/results/*.ipynb, executed experiment notebooks, when that folder exists) and the spec (docs/spec/*.md);
- a sidebar of short titles in groups, a table of contents per page, and a search box that works offline
  (search_index.js, built with the site, is loaded by a script tag, so it works from file:// too);
- links between notebooks, to the spec and to results become links between pages; a relative link to anything the
  site does not hold is turned into plain text (with a warning), so no link leaves the site.

Usage: python docs/render_html.py [_docs]
"""
import html
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / "site"
# experiments and results in the sidebar
READING_ORDER = ["datasets", "uga", "stgal", "calr", "compare", "claims", "claims_map"]
GROUPS = {"": "", "foundations": "Foundations", "methods": "Methods", "reporting": "Reporting",
          "experiments": "Experiments", "results": "Experiments: results, as last reproduced", "spec": "Specification"}
SHOWN = {"export", "exports", "exporti", "eval", "notest", "slow", "code-fold", "code-summary", "label", "fig-cap"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.S)
ANCHOR = re.compile(r'<a\s([^>]*?)href="([^"]*)"([^>]*)>(.*?)</a>', re.S)
TAG = re.compile(r"<(style|script)\b.*?</\1>|<[^>]+>", re.S)
ACTIVE = ' class="active"'
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


@dataclass
class Page:
    source: Path  # the repository file it comes from
    url: str  # its path in the site
    group: str  # a key of GROUPS
    short: str  # its name in the sidebar
    links_from: Path  # the folder its relative links start from
    title: str = ""
    subtitle: str = ""
    body: str = ""
    toc: list = field(default_factory=list)  # (level, anchor, text) of its h2 and h3

    @property
    def up(self) -> str:
        return "../" * self.url.count("/")


# --- which pages --------------------------------------------------------------------------------------------------

def chapter_group(name: str) -> str:
    """Chapters by number: 00-59 foundations, 60-69 methods, 70 on reporting."""
    number = int(name[:2])
    return "foundations" if number < 60 else "methods" if number < 70 else "reporting"


def in_reading_order(notebooks) -> list[Path]:
    """Experiment notebooks as a reader takes them (the data, each method, then the comparisons); others after."""
    rank = lambda p: (READING_ORDER.index(p.stem) if p.stem in READING_ORDER else len(READING_ORDER), p.stem)
    return sorted(notebooks, key=rank)


def site_pages(root: Path = ROOT) -> list[Page]:
    """Every page of the site, in sidebar order."""
    nbs, results, spec = root / "nbs", root / "docs" / "results", root / "docs" / "spec"
    pages = [Page(nbs / "index.ipynb", "index.html", "", "Home", nbs)]
    pages += [Page(p, p.stem + ".html", chapter_group(p.name), "", nbs) for p in sorted(nbs.glob("[0-9]*.ipynb"))]
    pages += [Page(p, f"experiments/{p.stem}.html", "experiments", p.stem, p.parent)
              for p in in_reading_order((nbs / "experiments").glob("*.ipynb"))]
    pages += [Page(p, f"results/{p.stem}.html", "results", p.stem, nbs / "experiments")
              for p in in_reading_order(results.glob("*.ipynb"))]  # an absent folder globs to nothing
    pages += [Page(p, f"spec/{p.stem}.html", "spec", p.stem, p.parent) for p in sorted(spec.glob("*.md"))]
    return pages


# --- cells ---------------------------------------------------------------------------------------------------------

def split_directives(source: str) -> tuple[dict, str]:
    """The leading `#| key: value` (or `#| key value`) lines as {key: value}, and the code after them."""
    lines, direc = source.splitlines(), {}
    while lines and lines[0].startswith("#|"):
        key, _, value = lines.pop(0)[2:].strip().partition(" ")
        direc[key.rstrip(":")] = value.strip().lower()
    return direc, "\n".join(lines)


def dropped(direc: dict, warn) -> bool:
    """Cells the reader does not see: hidden, excluded, or with a directive this renderer cannot honour."""
    unknown = set(direc) - SHOWN - {"hide", "include", "echo", "output"}
    for key in unknown: warn(f"directive `#| {key}` is not supported: cell dropped")
    return bool(unknown) or "hide" in direc or direc.get("include") == "false"


def text_of(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def markdown(source: str) -> str:
    return MD.render(source)


def render_output(out: dict, asis: bool) -> str:
    """One output as HTML; errors are not shown (the lessons are committed without tracebacks)."""
    kind = out.get("output_type")
    if kind == "stream":
        text = ANSI.sub("", text_of(out.get("text", "")))
        return markdown(text) if asis else f'<pre class="output {out.get("name", "")}">{html.escape(text)}</pre>'
    data = out.get("data", {}) if kind in ("execute_result", "display_data") else {}
    if asis and ("text/markdown" in data or "text/plain" in data):
        return markdown(text_of(data.get("text/markdown", data.get("text/plain"))))
    for mime in ("text/html", "image/svg+xml"):
        if mime in data: return f'<div class="output">{text_of(data[mime])}</div>'
    for mime in ("image/png", "image/jpeg"):
        if mime in data: return f'<div class="output">{image(mime, data[mime], out.get("metadata", {}).get(mime, {}))}</div>'
    if "text/markdown" in data: return f'<div class="output">{markdown(text_of(data["text/markdown"]))}</div>'
    if "text/plain" in data: return f'<pre class="output">{html.escape(ANSI.sub("", text_of(data["text/plain"])))}</pre>'
    return ""


def image(mime: str, payload, size: dict) -> str:
    """An inline image at its display size (a retina figure's metadata halves its pixel size)."""
    dims = "".join(f' {k}="{size[k]}"' for k in ("width", "height") if k in size)
    return f'<img src="data:{mime};base64,{text_of(payload).strip()}"{dims}>'


def render_code(cell, warn) -> str:
    direc, code = split_directives(text_of(cell.get("source") or ""))
    if dropped(direc, warn): return ""
    parts = [highlight(code, PythonLexer(), HtmlFormatter())] if direc.get("echo") != "false" and code.strip() else []
    if direc.get("output") != "false":
        parts += [render_output(o, direc.get("output") == "asis") for o in cell.get("outputs", [])]
    return f'<div class="cell">{"".join(parts)}</div>' if any(parts) else ""


def render_cell(cell, warn) -> str:
    if cell.get("source") is None: return ""  # nbdev's processing emptied it (exported or hidden)
    if cell["cell_type"] == "markdown": return markdown(text_of(cell["source"]))
    return render_code(cell, warn) if cell["cell_type"] == "code" else ""  # raw cells: front matter, read apart


# --- front matter -------------------------------------------------------------------------------------------------

def front_matter(nb) -> dict:
    """nbdev's front matter: a raw `---` YAML cell (what its processing writes), else a first markdown cell
    `# title` / `> subtitle`, which is then emptied so that it is not shown twice."""
    for cell in nb.cells:
        src = text_of(cell.get("source") or "").strip()
        if cell["cell_type"] == "raw" and src.startswith("---"):
            return yaml.safe_load(src.strip("-\n")) or {}
        if cell["cell_type"] == "markdown" and src:
            return title_cell(cell, src)
    return {}


def title_cell(cell, src: str) -> dict:
    m = re.match(r"#\s+(.+)\n*((?:>.*\n?)*)", src)
    if not m: return {}
    cell["source"] = src[m.end():]
    subtitle = " ".join(line.lstrip(">").strip() for line in m.group(2).splitlines())
    return {"title": m.group(1).strip(), "description": subtitle}


# --- notebooks and spec files into pages -------------------------------------------------------------------------

def processed(path: Path):
    """The notebook as nbdev_proc_nbs leaves it, in memory."""
    from execnb.nbio import read_nb
    from nbdev.processors import FilterDefaults
    nb, before = read_nb(path), os.environ.get("IN_TEST")
    os.environ["IN_TEST"] = "1"  # as nbdev_proc_nbs runs it
    try: FilterDefaults()(nb)
    finally:
        if before is None: os.environ.pop("IN_TEST")
        else: os.environ["IN_TEST"] = before
    return nb


def fill_notebook(page: Page) -> None:
    from execnb.nbio import read_nb
    fm = front_matter(read_nb(page.source))  # from the source: nbdev's processing keeps one line of the subtitle
    nb = processed(page.source)
    front_matter(nb)  # drops the title cell (or YAML cell) from the body
    page.title, page.subtitle = str(fm.get("title", page.source.stem)), str(fm.get("description", "") or "")
    page.short = page.short or page.title
    page.body = "\n".join(render_cell(c, lambda msg: warn(page, msg)) for c in nb.cells)


def warn(page: Page, message: str) -> None:
    print(f"warning: {page.url}: {message}", file=sys.stderr)


def fill_spec(page: Page) -> None:
    text = page.source.read_text(encoding="utf-8")
    m = re.search(r"^#\s+(.+)$", text, re.M)
    page.title = m.group(1).strip() if m else page.source.stem
    page.body = markdown(text[:m.start()] + text[m.end():] if m else text)


def fill(page: Page) -> Page:
    fill_spec(page) if page.source.suffix == ".md" else fill_notebook(page)
    return page


# --- headings, links ------------------------------------------------------------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", html.unescape(TAG.sub("", text)).lower()).strip("-") or "section"


def add_anchors(page: Page) -> None:
    """Give every heading an id (unique on the page) and collect the h2/h3 ones as the table of contents."""
    seen = {}
    def anchor(m):
        level, inner = int(m.group(1)), m.group(2)
        base = slug(inner)
        seen[base] = seen.get(base, 0) + 1
        ident = base if seen[base] == 1 else f"{base}-{seen[base]}"
        if level in (2, 3): page.toc.append((level, ident, html.unescape(TAG.sub("", inner)).strip()))
        return f'<h{level} id="{ident}">{inner}</h{level}>'
    page.body = HEADING.sub(anchor, page.body)


def site_target(page: Page, href: str, urls: dict) -> str | None:
    """The site-relative URL a relative link of `page` points to, or None when the site does not hold it."""
    path, _, frag = href.partition("#")
    if not path: return href
    target = (page.links_from / path).resolve()
    url = urls.get(target)
    if url is None and target.parent.name == "spec":  # the spec's own copies (shared/spec/X.md) are the pages too
        url = next((u for src, u in urls.items() if src.parent.name == "spec" and src.name == target.name), None)
    if url is None: return None
    rel = os.path.relpath(url, os.path.dirname(page.url) or ".")
    return rel + (f"#{frag}" if frag else "")


def rewrite_links(page: Page, urls: dict) -> None:
    """Relative links point at pages; one to something the site does not hold becomes plain text."""
    def fix(m):
        before, href, after, inner = m.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:|//|#", href): return m.group(0)
        target = site_target(page, html.unescape(href), urls)
        if target is None:
            warn(page, f"link {href} is not in the site")
            return f'<span class="offsite">{inner}</span>'
        return f'<a {before}href="{html.escape(target)}"{after}>{inner}</a>'
    page.body = ANCHOR.sub(fix, page.body)


# --- the page around the body ------------------------------------------------------------------------------------

def sidebar(pages: list[Page], here: Page) -> str:
    groups = {}
    for p in pages: groups.setdefault(p.group, []).append(p)
    out = []
    for key, members in groups.items():
        items = "".join(f'<li><a href="{here.up}{p.url}"{ACTIVE if p is here else ""}>{html.escape(p.short)}</a></li>'
                        for p in members)
        label = f'<p class="group">{GROUPS[key]}</p>' if GROUPS[key] else ""
        out.append(f'<div class="section" data-group="{key}">{label}<ul>{items}</ul></div>')
    return "".join(out)


def table_of_contents(page: Page) -> str:
    if not page.toc: return ""
    items = "".join(f'<li class="l{level}"><a href="#{ident}">{html.escape(text)}</a></li>'
                    for level, ident, text in page.toc)
    return f'<p class="group">On this page</p><ul>{items}</ul>'


def document(page: Page, pages: list[Page]) -> str:
    up, subtitle = page.up, f'<p class="subtitle">{markdown(page.subtitle)}</p>' if page.subtitle else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page.title)} – reid-nb</title>
<link rel="stylesheet" href="{up}site.css"><link rel="stylesheet" href="{up}pygments.css"></head>
<body><header class="topbar"><a class="brand" href="{up}index.html">reid-nb</a>
<div class="search"><input id="search" type="search" placeholder="Search (press /)" autocomplete="off">
<div id="search-results" hidden></div></div></header>
<div class="layout"><nav class="sidebar">{sidebar(pages, page)}</nav>
<main class="content"><header class="title-block"><h1 class="title">{html.escape(page.title)}</h1>{subtitle}</header>
{page.body}</main>
<nav class="toc">{table_of_contents(page)}</nav></div>
<script>window.SITE_ROOT = "{up}";</script><script src="{up}search_index.js"></script><script src="{up}search.js"></script>
</body></html>
"""


# --- the search index ---------------------------------------------------------------------------------------------

def plain(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(TAG.sub(" ", fragment))).strip()


def search_entries(page: Page) -> list[dict]:
    """One entry per h2 section of the page (and one for what comes before the first)."""
    parts = re.split(r'(?=<h2 id=")', page.body)
    entries = []
    for part in parts:
        m = re.match(r'<h2 id="([^"]+)">(.*?)</h2>', part, re.S)
        section, anchor = (plain(m.group(2)), m.group(1)) if m else ("", "")
        entries.append({"url": page.url, "anchor": anchor, "page": page.title, "section": section,
                        "text": plain(part)[:4000]})
    return entries


# --- the site ---------------------------------------------------------------------------------------------------------

def build(out: Path, root: Path = ROOT) -> list[Path]:
    """Write the whole site under `out`; return the HTML pages written."""
    pages = [fill(p) for p in site_pages(root)]
    urls = {p.source.resolve(): p.url for p in pages}
    for page in pages:
        add_anchors(page)
        rewrite_links(page, urls)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for page in pages:
        target = out / page.url
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(document(page, pages), encoding="utf-8")
        written.append(target)
    write_assets(out, [e for p in pages for e in search_entries(p)])
    return written


def write_assets(out: Path, entries: list[dict]) -> None:
    for asset in ASSETS.iterdir(): shutil.copy(asset, out / asset.name)
    (out / "pygments.css").write_text(HtmlFormatter(style="friendly").get_style_defs(".highlight"), encoding="utf-8")
    index = json.dumps(entries, ensure_ascii=False)
    (out / "search.json").write_text(index, encoding="utf-8")
    (out / "search_index.js").write_text(f"window.SEARCH_INDEX = {index};\n", encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "_docs")
    done = build(target)
    print(f"{len(done)} pages in {target}/ (open {target / 'index.html'})")
