"""The documentation site (docs/render_html.py, `make docs`): directives honoured, front matter as titles, links that
stay inside the site, a sidebar and a search index that cover every page."""
import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_html", ROOT / "docs" / "render_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_html = load_renderer()


class PageParser(HTMLParser):
    """The links, ids, sidebar entries and visible text of one generated page."""
    def __init__(self):
        super().__init__()
        self.links, self.ids, self.sidebar, self.text, self._nav, self._skip = [], set(), [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        if tag in ("a", "link", "script", "img") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "nav" and a.get("class") == "sidebar": self._nav = 1
        elif tag == "nav": self._nav = 0
        if self._nav and tag == "a": self.sidebar.append(a["href"])
        if tag in ("style", "script"): self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script"): self._skip -= 1

    def handle_data(self, data):
        if not self._skip: self.text.append(data)


def parse(page: Path) -> PageParser:
    p = PageParser()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def is_internal(link: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:|//", link)


def problems(site: Path) -> list[str]:
    """Every dead internal link (file or anchor), raw directive, front-matter block or page missing from the
    sidebar, over all pages of the site."""
    pages = sorted(site.rglob("*.html"))
    parsed = {p: parse(p) for p in pages}
    found = []
    for page, info in parsed.items():
        name, text = page.relative_to(site).as_posix(), "".join(info.text)
        for link in filter(is_internal, info.links):
            path, _, frag = link.partition("#")
            target = (page.parent / unquote(path)).resolve() if path else page
            if not target.exists(): found.append(f"{name}: dead link {link}")
            elif frag and target.suffix == ".html" and frag not in parsed[target].ids:
                found.append(f"{name}: link {link} to a missing anchor")
        if "#|" in text: found.append(f"{name}: a raw directive: {text[text.index('#|'):][:60]!r}")
        if re.search(r"(?m)^---\s*\n\s*(title|description):", text): found.append(f"{name}: front matter in the body")
        in_sidebar = {(page.parent / h).resolve() for h in info.sidebar}
        missing = [p.relative_to(site).as_posix() for p in pages if p.resolve() not in in_sidebar]
        if missing: found.append(f"{name}: sidebar lacks {missing}")
    return found


# --- small notebooks: each rule on its own -----------------------------------------------------------------------

def tiny_repo(root: Path, with_results: bool) -> Path:
    nbs = root / "nbs"
    (nbs / "experiments").mkdir(parents=True)
    (root / "docs" / "spec").mkdir(parents=True)
    out = new_output("execute_result", {"text/plain": "'**bold** asis'"}, execution_count=None)
    chapter = new_notebook(cells=[
        new_markdown_cell("# uga\n\n> Graph association, in one subtitle."),
        new_markdown_cell("## A tiny run\n\nSee [the index](index.ipynb), [the spec](../docs/spec/METHODS.md#one) "
                          "and [a module](../reid_nb/uga.py)."),
        new_code_cell("#| echo: false\n'**bold** asis'", outputs=[out]),
        new_code_cell("#| output: asis\nprint('**asis** markdown')",
                      outputs=[new_output("stream", name="stdout", text="**asis** markdown\n")]),
        new_code_cell("#| hide\nsecret = 1"),
        new_code_cell("#| some-unknown-directive: yes\nshown = 2"),
        new_code_cell("#| eval: false\nnot_run = 3")])
    nbformat.write(chapter, nbs / "60_uga.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# reid-nb\n\n> Home.\n\n[UGA](60_uga.ipynb#a-tiny-run)")]),
                   nbs / "index.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# UGA: the experiment\n\n> Runs it.")]),
                   nbs / "experiments" / "uga.ipynb")
    (root / "docs" / "spec" / "METHODS.md").write_text("# Methods\n\n## One\n\nSee [DATA](../../shared/spec/DATA.md).\n")
    (root / "docs" / "spec" / "DATA.md").write_text("# Data\n\nBack to [methods](METHODS.md).\n")
    if with_results:
        (root / "docs" / "results").mkdir()
        nbformat.write(new_notebook(cells=[new_markdown_cell("# UGA: as last reproduced"),
                                           new_code_cell("table", outputs=[new_output(
                                               "execute_result", {"text/html": "<table><tr><td>87.2</td></tr></table>"},
                                               execution_count=None)])]),
                       root / "docs" / "results" / "uga.ipynb")
    return root


@pytest.mark.parametrize("with_results", [False, True], ids=["without results", "with results"])
def test_tiny_site_honours_directives_and_front_matter(tmp_path, with_results):
    root = tiny_repo(tmp_path / "repo", with_results)
    site = tmp_path / "site"
    written = render_html.build(site, root=root)
    urls = [p.relative_to(site).as_posix() for p in written]
    expected = ["index.html", "60_uga.html", "experiments/uga.html"] + (["results/uga.html"] if with_results else [])
    assert urls == expected + ["spec/DATA.html", "spec/METHODS.html"]
    assert problems(site) == []
    page = (site / "60_uga.html").read_text()
    assert '<h1 class="title">uga</h1>' in page and "Graph association, in one subtitle." in page
    assert "<strong>asis</strong> markdown" in page  # output: asis rendered as Markdown
    assert "&#x27;**bold** asis&#x27;" in page and "echo" not in page  # echo: false: the output without the input
    assert "secret" not in page and "shown = 2" not in page and "not_run" in page
    assert 'href="index.html"' in page and 'href="spec/METHODS.html#one"' in page
    assert '<span class="offsite">a module</span>' in page  # a link the site does not hold becomes text
    assert 'href="DATA.html"' in (site / "spec" / "METHODS.html").read_text()  # ../../shared/spec/DATA.md
    if with_results:
        assert ">87.2<" in (site / "results" / "uga.html").read_text()
        assert "as last reproduced" in (site / "index.html").read_text()  # its sidebar group


# --- the real site ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The real site. Building it runs every chapter's exported cells in this process (nbdev does, for `show_doc`), so
    13_world's `register_dataset("synth", ...)` would leave the notebook's copy of the opener in `reid_nb.data`'s
    registry, and the tests that follow would build worlds with functions a worker process cannot unpickle: the
    registry is put back as it was."""
    from reid_nb import data
    data.dataset_names()  # the package's modules register theirs first
    openers = dict(data.DATASET_OPENERS)
    out = tmp_path_factory.mktemp("docs") / "_docs"
    try:
        render_html.build(out)
    finally:
        data.DATASET_OPENERS.clear()
        data.DATASET_OPENERS.update(openers)
    return out


def test_building_the_site_leaves_the_dataset_registry_as_it_was(site):
    from reid_nb import data, world
    assert data.DATASET_OPENERS["synth"] is world._open_synth


@pytest.mark.slow
def test_site_has_no_dead_link_raw_directive_or_page_outside_the_sidebar(site):
    assert problems(site) == []


@pytest.mark.slow
def test_site_covers_every_notebook_and_the_spec(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    notebooks = {p.relative_to(ROOT / "nbs").with_suffix(".html").as_posix()
                 for p in (ROOT / "nbs").rglob("*.ipynb") if not any(part[0] in "._" for part in p.parts[-2:])}
    spec = {f"spec/{p.stem}.html" for p in (ROOT / "docs" / "spec").glob("*.md")}
    results = {f"results/{p.stem}.html" for p in (ROOT / "docs" / "results").glob("*.ipynb")}
    assert pages == notebooks | spec | results


@pytest.mark.slow
def test_search_index_covers_every_page(site):
    entries = json.loads((site / "search.json").read_text(encoding="utf-8"))
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {e["url"] for e in entries} == pages
    assert all(e["text"] for e in entries if e["section"])
    assert (site / "search_index.js").read_text(encoding="utf-8").startswith("window.SEARCH_INDEX = [")


@pytest.mark.slow
def test_chapter_pages_show_titles_and_api_docs_not_their_code(site):
    page = (site / "60_uga.html").read_text(encoding="utf-8")
    assert '<h1 class="title">uga</h1>' in page and 'class="subtitle"' in page
    assert "show_doc(" not in page and "title: " not in page
