"""The papermill driver and the `reid-nb` command line: strict parameters, where runs go, failures, reproduce."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from reid_nb.core import BadInputError
from reid_nb import params as pa, reproduce as rp, runner as rn, sets as rs
from reid_nb.cli import main
from reid_nb.core import CHECK_ENV
from reid_nb.params import Param, check_parameters, coerce_value, notebook_parameters
from reid_nb.runner import NotebookError, run_notebook

PARAMS = '''profile = "default"  # smoke | default | paper
n = 3  # how many
rate = 0.5  # a fraction
name: str = "x"  # annotated
fast = False  # skip the slow part
sizes = [1,  # first
         2]
neg = -2  # a negative number
'''
# The body records what it saw (parameters and working directory) in a JSON file next to the notebook.
BODY = '''import json, os
json.dump({"cwd": os.getcwd(), "n": n, "rate": rate, "fast": fast, "sizes": sizes, "profile": profile},
          open("seen.json", "w"))'''


def make_notebook(path, params=PARAMS, *bodies, tag="parameters"):
    """Write a notebook: a parameters cell then code cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"),
                nbformat.v4.new_code_cell(params, metadata={"tags": [tag]})]
    nb.cells += [nbformat.v4.new_code_cell(b) for b in bodies]
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True); nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fake checkout (settings.ini + nbs/experiments/) with results redirected to tmp_path/res."""
    root = tmp_path / "proj"; (root / "nbs" / "experiments").mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    return root


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- parsing

def test_parameters_are_read_with_types_defaults_and_comments(tmp_path):
    ps = notebook_parameters(make_notebook(tmp_path / "a.ipynb", PARAMS, "raise SystemExit('must not run')"))
    assert list(ps) == ["profile", "n", "rate", "name", "fast", "sizes", "neg"]
    assert ps["profile"] == Param("default", str, "smoke | default | paper")
    assert ps["n"] == Param(3, int, "how many") and ps["rate"] == Param(0.5, float, "a fraction")
    assert ps["name"] == Param("x", str, "annotated") and ps["fast"] == Param(False, bool, "skip the slow part")
    assert ps["sizes"] == Param([1, 2], list, "first") and ps["neg"] == Param(-2, int, "a negative number")


def test_parameter_without_comment_has_empty_comment(tmp_path):
    assert notebook_parameters(make_notebook(tmp_path / "a.ipynb", "k = 1\n"))["k"].comment == ""


@pytest.mark.parametrize("src, words", [
    ("n = 1 + f()  # computed", ["line 1", "literal"]),
    ("import os", ["line 1", "name = literal"]),
    ("a = 1  # ok\nb = None  # none", ["line 2", "b = None", "no usable type"]),
    ("a = 1  # ok\na = 2  # again", ["line 2", "assigned twice"]),
    ("a, b = 1, 2  # tuple", ["plain name"]),
    ("a = {1, 2}  # a set", ["no usable type"]),
    ("a = (  # broken", ["line 1"]),
])
def test_parameters_cell_accepts_only_typed_literals(tmp_path, src, words):
    with pytest.raises(BadInputError) as e: notebook_parameters(make_notebook(tmp_path / "bad.ipynb", src))
    assert "bad.ipynb" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_two_parameters_cells_are_refused_and_none_means_no_parameters(tmp_path):
    two = make_notebook(tmp_path / "two.ipynb", "a = 1  # a", "b = 2  # b")
    nb = nbformat.read(two, 4); nb.cells[2].metadata["tags"] = ["parameters"]; nbformat.write(nb, two)
    with pytest.raises(BadInputError, match="2 cells are tagged 'parameters'"): notebook_parameters(two)
    none = make_notebook(tmp_path / "none.ipynb", "a = 1", tag="other")
    assert notebook_parameters(none) == {}
    with pytest.raises(BadInputError, match="declares no parameters"): check_parameters(none, {"a": 2})


def test_not_a_notebook(tmp_path):
    (tmp_path / "x.ipynb").write_text("{not json")
    with pytest.raises(BadInputError, match="invalid JSON"): notebook_parameters(tmp_path / "x.ipynb")
    with pytest.raises(BadInputError, match="expected an existing .ipynb"): notebook_parameters(tmp_path / "y.ipynb")


# ---------------------------------------------------------------- checking and coercion


@pytest.mark.parametrize("default, given, expected", [
    (3, "7", 7), (3, " -2 ", -2), (3, 5, 5),
    (0.5, "1e-3", 1e-3), (0.5, 2, 2.0), (0.5, "4", 4.0),
    (False, "true", True), (False, "True", True), (False, "1", True), (True, "false", False), (True, "0", False),
    (True, False, False),
    ("a", "3", "3"), ("a", "", ""),
    ([1, 2], "[4, 5, 6]", [4, 5, 6]), ([1, 2], "(7,)", [7]), ([1, 2], (8, 9), [8, 9]), ([0.1], "[1, 0.5]", [1.0, 0.5]),
    (["a"], '["x", "y"]', ["x", "y"]), ([], '[1, "a"]', [1, "a"]), ({"k": 1}, '{"j": 2}', {"j": 2}),
])
def test_values_are_converted_to_the_declared_type(default, given, expected):
    got = coerce_value("x", given, Param(default, type(default), ""))
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("default, given", [
    (3, "3.5"), (3, "three"), (3, 3.0), (3, True), (3, "true"),
    (0.5, "fast"), (0.5, True), (0.5, [1]),
    (False, "yes"), (False, "2"), (False, 1), (False, ""),
    ("a", 3), ("a", ["a"]),
    ([1, 2], "1, 2]"), ([1, 2], '["a"]'), ([1, 2], "5"), ([1, 2], [1.5]), ([0.1], [True]),
    ({"k": 1}, "[1]"),
])
def test_values_of_the_wrong_type_are_refused(default, given):
    with pytest.raises(BadInputError, match=r"parameter x: .* does not fit the declared"):
        coerce_value("x", given, Param(default, type(default), ""))


def test_profile_must_be_a_known_profile():
    assert coerce_value("profile", "smoke", Param("default", str, "")) == "smoke"
    with pytest.raises(BadInputError, match="smoke, default, paper"):
        coerce_value("profile", "fast", Param("default", str, ""))


def test_check_reports_every_problem_with_suggestions(tmp_path):
    path = make_notebook(tmp_path / "a.ipynb")
    with pytest.raises(BadInputError) as e: check_parameters(path, {"rte": 1, "n": "x", "zzz": 1})
    msg = str(e.value)
    assert "a.ipynb" in msg and "'rte' (did you mean 'rate'?)" in msg and "'zzz'; valid names" in msg
    assert "profile, n, rate, name, fast, sizes, neg" in msg and "'x' does not fit the declared int" in msg


# ---------------------------------------------------------------- declared ranges and choices

RANGED = '''profile = "default"  # [smoke|default|paper] how long
k = 3  # [int, at least 1] neighbours
lam = 0.5  # [float, above 0, at most 1] a fraction
mode = "a"  # [a|b|''] a mode, or none
etas = [0.1, 0.5]  # [0.1|0.5|1.0] a sweep
free = 2  # no declaration
'''


def test_declared_rules_are_parsed(tmp_path):
    ps = notebook_parameters(make_notebook(tmp_path / "r.ipynb", RANGED))
    assert ps["k"].rule == pa.Rule("int, at least 1", bounds=(("at least", 1),))
    assert ps["lam"].rule.bounds == (("above", 0.0), ("at most", 1.0))
    assert ps["mode"].rule.choices == ("a", "b", "") and ps["etas"].rule.choices == (0.1, 0.5, 1.0)
    assert ps["free"].rule is None and ps["k"].comment == "[int, at least 1] neighbours"


@pytest.mark.parametrize("name, value, ok", [
    ("k", "1", True), ("k", "0", False), ("k", "-3", False), ("k", 10**6, True),
    ("lam", "1", True), ("lam", "0", False), ("lam", "1e-9", True), ("lam", "1.0001", False),
    ("mode", "b", True), ("mode", "", True), ("mode", "c", False), ("mode", "A", False),
    ("etas", "[1.0, 0.1]", True), ("etas", "[]", True), ("etas", "[0.1, 0.2]", False),
    ("free", "-7", True), ("profile", "paper", True), ("profile", "fast", False),
])
def test_values_are_checked_against_the_declaration(tmp_path, name, value, ok):
    path = make_notebook(tmp_path / "r.ipynb", RANGED)
    if ok:
        assert name in check_parameters(path, {name: value})
        return
    with pytest.raises(BadInputError) as e: check_parameters(path, {name: value})
    assert "r.ipynb" in str(e.value) and f"parameter {name}:" in str(e.value)


@pytest.mark.parametrize("src, words", [
    ("k = 3  # [int >= 1] uses a sign", ["line 1", "k", "at least"]),
    ("k = 3  # [at least one] not a number", ["line 1", "'one'", "not a int"]),
    ("k = 3  # [str, at least 1] wrong type", ["line 1", "the default is a int"]),
    ("s = 'a'  # [at least 1] bound on text", ["line 1", "bounds for numbers only"]),
    ("k = 3  # [a|b] choices of the wrong type", ["line 1", "'a'", "not a int"]),
    ("x = 1\nk = 0  # [int, at least 1] default outside", ["line 2", "breaks its own declaration", "at least 1"]),
    ("m = 'c'  # [a|b] default not a choice", ["line 1", "breaks its own declaration"]),
    ("v = [1, 'a']  # [1|2] mixed items", ["line 1", "items share one type"]),
])
def test_bad_declarations_are_errors_of_the_notebook(tmp_path, src, words):
    with pytest.raises(BadInputError) as e: notebook_parameters(make_notebook(tmp_path / "bad.ipynb", src))
    assert "bad.ipynb" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_papermill_reads_declared_parameters_without_warnings(tmp_path, caplog):
    from papermill.translators import PythonTranslator  # papermill inspects the parameters cell with it
    cell = nbformat.read(make_notebook(tmp_path / "r.ipynb", RANGED), 4).cells[1]
    assert [p.name for p in PythonTranslator.inspect(cell)] == ["profile", "k", "lam", "mode", "etas", "free"]
    assert "Unable to parse" not in caplog.text
    signs = nbformat.read(make_notebook(tmp_path / "s.ipynb", "k = 3  # [int >= 1] k"), 4).cells[1]
    assert PythonTranslator.inspect(signs) == [] and "Unable to parse" in caplog.text  # why bounds are words


# ---------------------------------------------------------------- running into result sets

def the_set(res, stem="t"):
    """The one finished set of `stem` under `res`."""
    sets = [p for p in (res / stem).iterdir() if (p / "manifest.json").exists()]
    assert len(sets) == 1, sets
    return sets[0]


def test_bad_parameters_are_refused_before_anything_runs(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY)
    for bad in [{"nn": 4}, {"n": "4.5"}, {"profile": "huge"}]:
        with pytest.raises(BadInputError): run_notebook(path, **bad)
    with pytest.raises(BadInputError): run_notebook(path, profile="huge")
    assert not (path.parent / "seen.json").exists() and not (tmp_path / "res").exists()


def test_run_publishes_a_result_set(project, tmp_path, monkeypatch):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS + "seed = 0  # s\n", BODY, TABLE_T)
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the notebook still runs in its own folder
    before = snapshot(project / "nbs")
    out = run_notebook(path, profile="smoke", n="5", sizes=[3], fast="1", rate=2)
    effective = {"profile": "smoke", "n": 5, "rate": 2.0, "name": "x", "fast": True, "sizes": [3], "neg": -2, "seed": 0}
    assert out == tmp_path / "res" / "t" / rs.set_key(effective) / "t.ipynb" and out.exists()
    assert out.parent.name.startswith("smoke-s0-")
    seen = json.loads((path.parent / "seen.json").read_text())
    assert seen == {"cwd": str(path.parent.resolve()), "n": 5, "rate": 2.0, "fast": True, "sizes": [3],
                    "profile": "smoke"}
    (path.parent / "seen.json").unlink()
    assert snapshot(project / "nbs") == before  # the source notebook is untouched, no copy in nbs/
    done = nbformat.read(out, 4)
    assert done.metadata.kernelspec.name == "python3"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in done.cells)
    m = json.loads((out.parent / "manifest.json").read_text())
    assert m["parameters"] == effective and m["given"] == {"profile": "smoke", "n": 5, "rate": 2.0, "fast": True,
                                                           "sizes": [3]}
    assert m["notebook"] == "t" and m["started"] <= m["finished"] and m["key"] == out.parent.name
    files = {str(p.relative_to(out.parent)): p.stat().st_size for p in out.parent.rglob("*")
             if p.is_file() and p.name != "manifest.json"}
    assert m["files"] == files and "tab/table.csv" in files and "tab/checkpoints/last.pt" in files
    assert (out.parent / "tab" / "table.csv").read_text() == "profile,seed\nsmoke,0\n"
    assert sorted(p.name for p in (tmp_path / "res" / "t").iterdir()) == [out.parent.name]  # no staging left
    # without a profile the notebook's default is in the key
    assert run_notebook(path).parent.name.startswith("default-s0-")


def test_a_changed_parameter_is_a_new_set_and_the_old_one_is_kept(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p\nseed = 0  # s\n"
                         "k = 3  # k", TABLE_T)
    a = run_notebook(path).parent
    b = run_notebook(path, seed=1).parent
    c = run_notebook(path, k=5).parent
    again = run_notebook(path, k="3").parent  # the same configuration as `a`, given explicitly
    assert len({a, b, c, again}) == 4 and a.name.startswith("smoke-s0-") and b.name.startswith("smoke-s1-")
    assert again.name == a.name + ".2" and a.exists()  # a rerun never replaces the earlier set
    assert (b / "tab" / "table.csv").read_text() == "profile,seed\nsmoke,1\n"
    assert (a / "tab" / "table.csv").read_text() == "profile,seed\nsmoke,0\n"
    res = tmp_path / "res"
    assert rs.find_result_set("t", res, seed=1) == b and rs.find_result_set(path, res, k=5) == c
    assert rs.find_result_set("t", res, k=3, seed=0) == again  # the newest of the two
    assert rs.result_sets("t", res, seed=0, k=3) == [again, a] and rs.find_result_set("t", res, seed=2) is None
    assert rs.find_result_set("t", res, nosuch=1) is None and rs.find_result_set("u", res) is None


# Trains (writes one checkpoint file per "epoch") unless the checkpoints are there already; says which.
READ_BACK = """import os, pathlib
ck = pathlib.Path(os.environ["REID_NB_RESULTS"]) / "ck"; ck.mkdir(exist_ok=True)
have = sorted(p.name for p in ck.glob("*.pt"))
for e in range(len(have), 2): (ck / f"e{e}.pt").write_bytes(bytes([e]))
print("trained" if len(have) < 2 else "read back")"""


def test_a_rerun_reads_the_finished_sets_checkpoints_back_unless_fresh(project, tmp_path, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", READ_BACK)
    said = lambda out: nbformat.read(out, 4).cells[-1].outputs[0].text.strip()
    first = run_notebook(path)
    again = run_notebook(path)
    assert said(first) == "trained" and said(again) == "read back" and again.parent.name == first.parent.name + ".2"
    assert "reading back the checkpoints of the finished set" in capsys.readouterr().err
    assert (again.parent / "ck" / "e1.pt").stat().st_ino == (first.parent / "ck" / "e1.pt").stat().st_ino  # a link
    assert said(run_notebook(path, fresh=True)) == "trained"
    assert main(["run", str(path), "--fresh"]) == 0 and "trained" in capsys.readouterr().out
    for s in rs.result_sets("t", tmp_path / "res"):  # as prune_set marks a set whose checkpoints it pruned
        m = json.loads((s / "manifest.json").read_text())
        (s / "manifest.json").write_text(json.dumps({**m, "pruned": "2026-01-01T00:00:00+00:00"}))
    assert said(run_notebook(path)) == "trained"  # a pruned set is never read back


# A notebook whose first run dies half-way (after its first "epoch" file) and whose second run resumes from it.
RESUME = '''import os, pathlib
out = pathlib.Path(os.environ["REID_NB_RESULTS"]) / "ck"; out.mkdir(exist_ok=True)
done = sorted(p.name for p in out.glob("epoch*"))
for e in range(len(done), 3):
    (out / f"epoch{e}").write_text(str(e))
    if e == 0 and not os.path.exists(os.environ["REID_NB_RESULTS"] + "/../../../die-once-done"):
        open(os.environ["REID_NB_RESULTS"] + "/../../../die-once-done", "w").close()
        raise RuntimeError("killed on purpose")
print("resumed from", len(done))'''


def test_a_failed_run_keeps_its_staging_and_the_same_run_resumes(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", RESUME)
    with pytest.raises(NotebookError) as e: run_notebook(path)
    msg = str(e.value)
    staging = [p for p in (tmp_path / "res" / "t").iterdir()]
    assert len(staging) == 1 and staging[0].name.endswith(".partial") and str(staging[0] / "t.ipynb") in msg
    assert str(path) in msg and "cell 3 of 3" in msg and "killed on purpose" in msg and "resumes" in msg
    assert sorted(p.name for p in (staging[0] / "ck").iterdir()) == ["epoch0"]
    (staging[0] / "ck" / ".epoch1.abc.tmp").write_text("half")  # a temporary a killed write left behind
    out = run_notebook(path)
    assert out.parent.name + ".partial" == staging[0].name and not staging[0].exists()
    cells = nbformat.read(out, 4).cells
    assert cells[-1].outputs[0].text == "resumed from 1\n"
    assert sorted(p.name for p in (out.parent / "ck").iterdir()) == ["epoch0", "epoch1", "epoch2"]


# Fails on a checkpoint that no longer fits (an "old" one, put in the staging folder by hand below); else writes one.
POISONED = """import os, pathlib
ck = pathlib.Path(os.environ["REID_NB_RESULTS"]) / "ck.pt"
if ck.exists() and ck.read_text() == "old": raise RuntimeError("this checkpoint is of another world")
ck.write_text("new")"""


def test_fresh_moves_an_unfinished_set_aside_and_starts_over(project, tmp_path, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", POISONED)
    final = rs.set_folder(path, {"profile": "smoke"}, tmp_path / "res")
    staging = final.with_name(final.name + ".partial")
    staging.mkdir(parents=True)
    (staging / "ck.pt").write_text("old")
    with pytest.raises(NotebookError) as e: run_notebook(path)  # resuming fails, and would fail every time
    assert "the same command resumes from its checkpoints; --fresh starts over, moving the unfinished set aside" in \
        str(e.value)
    capsys.readouterr()
    assert main(["run", str(path), "--fresh"]) == 0
    aside = staging.with_name(staging.name + ".abandoned-1")
    err = capsys.readouterr().err
    assert f"reid-nb: --fresh: moved the unfinished set {staging} aside to {aside}; starting over\n" in err
    assert (aside / "ck.pt").read_text() == "old" and (aside / "t.ipynb").exists()  # kept, with the failed copy
    assert not staging.exists() and (the_set(tmp_path / "res") / "ck.pt").read_text() == "new"
    staging.mkdir()
    (staging / "ck.pt").write_text("old")
    assert run_notebook(path, fresh=True).exists() and (staging.with_name(staging.name + ".abandoned-2") / "ck.pt").exists()
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name, final.name + ".2", aside.name,
                                                               staging.name + ".abandoned-2"]
    assert rs.result_sets("t", tmp_path / "res") == [final.with_name(final.name + ".2"), final]  # the aside: not sets

def test_two_identical_runs_at_once_are_refused(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", "x = 1")
    staging = rs.set_folder(path, {"profile": "smoke"}, tmp_path / "res")
    staging = staging.with_name(staging.name + ".partial")
    with rs._staging(staging):
        with pytest.raises(BadInputError, match="another run of this configuration"): run_notebook(path)
    assert run_notebook(path).exists()


def test_files_follow_the_umask(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p\nseed = 0  # s\n",
                         TABLE_T, "from reid_nb.core import write_table\nwrite_table([{'a': 1}], 'w')")
    old = os.umask(0o022)
    try: out = run_notebook(path)
    finally: os.umask(old)
    modes = {str(p.relative_to(out.parent)): p.stat().st_mode & 0o777 for p in out.parent.rglob("*")}
    assert modes["w.csv"] == 0o644 and modes["manifest.json"] == 0o644 and modes["t.ipynb"] == 0o644, modes
    assert (out.parent.stat().st_mode & 0o777) == 0o755


def test_output_copy_never_overwrites(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, "y = 1")
    mine = tmp_path / "my_analysis.ipynb"
    mine.write_text("my own notebook")
    with pytest.raises(BadInputError, match="my_analysis.ipynb: exists; .*--force"): run_notebook(path, output=mine)
    assert mine.read_text() == "my own notebook" and not (tmp_path / "res").exists()
    out = run_notebook(path, output=mine, force=True)
    assert mine.read_bytes() == out.read_bytes()
    fresh = tmp_path / "new" / "copy.ipynb"
    second = run_notebook(path, output=fresh)
    assert second.parent.name == out.parent.name + ".2" and fresh.read_bytes() == second.read_bytes()


def test_default_results_root_is_the_notebooks_project(project, tmp_path, monkeypatch):
    monkeypatch.delenv("REID_NB_RESULTS")
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'default'  # p\npath = ''  # a path",
                         "assert path == 'x'")
    monkeypatch.chdir(tmp_path)  # a parameter may be called `path`, like run_notebook's first argument
    assert run_notebook(path, profile="smoke", path="x").parent.parent == project / "results" / "t"


def test_output_may_not_go_into_nbs(project):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY)
    for out in [project / "nbs" / "t-run.ipynb", path, project / "nbs" / "experiments" / "x.ipynb"]:
        with pytest.raises(BadInputError, match="never into"): run_notebook(path, output=out)
    with pytest.raises(BadInputError, match="ending in .ipynb"): run_notebook(path, output=project / "x.txt")
    assert not (path.parent / "seen.json").exists()


def test_a_failing_cell_is_named(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, "y = 1", "z = n // 0")
    with pytest.raises(NotebookError) as e: run_notebook(path, profile="smoke")
    msg = str(e.value)
    assert str(path) in msg and "cell 4 of 4" in msg and "ZeroDivisionError" in msg and "z = n // 0" in msg


def test_cell_output_streams_while_the_notebook_runs(project, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p",
                         "import sys\nfor e in range(3): print(f'epoch {e}: loss {1 / (e + 1):.2f}', flush=True)\n"
                         "print('to stderr', file=sys.stderr)")
    run_notebook(path, echo=True)
    out, err = capsys.readouterr()
    assert "epoch 0: loss 1.00\nepoch 1: loss 0.50\nepoch 2: loss 0.33\n" in out and "to stderr" in err
    run_notebook(path, profile="default")
    assert "epoch 0" not in capsys.readouterr().out  # echo is off by default (Python calls)


# ---------------------------------------------------------------- pruning

TRAIN = '''import os, pathlib, torch
from reid_nb.train import run_epochs
torch.manual_seed(0)
net = torch.nn.Linear(8, 4)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
def epoch(e, s):
    loss = s["model"](torch.ones(2, 8)).pow(2).mean()
    s["opt"].zero_grad(); loss.backward(); s["opt"].step()
    return {"loss": loss.item()}
ck = pathlib.Path(os.environ["REID_NB_RESULTS"]) / "m" / "checkpoints" / "stage1.pt"
history = run_epochs(3, epoch, {"model": net, "opt": opt, "gen": torch.Generator().manual_seed(1), "labels": [1, 2]},
                     ck, config={"lr": 0.1})
torch.save(net.state_dict(), ck.parent / "final_weights.pt")'''


def test_prune_keeps_weights_and_history(project, tmp_path, capsys):
    import torch
    from reid_nb.train import load_checkpoint
    from reid_nb.core import config_hash
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", TRAIN)
    out = run_notebook(path)
    ck = out.parent / "m" / "checkpoints" / "stage1.pt"
    full = torch.load(ck, weights_only=False)
    before = ck.stat().st_size
    assert rs.prune(results_dir=tmp_path / "res", dry_run=True)[0][0] == ck and ck.stat().st_size == before
    assert "would prune" in capsys.readouterr().out
    assert main(["prune", "t"]) == 0
    assert f"pruned {ck}" in capsys.readouterr().out
    pruned = torch.load(ck, weights_only=False)
    assert ck.stat().st_size < before and sorted(pruned["state"]) == ["labels", "model"]
    assert pruned["pruned"]["dropped"] == ["gen", "opt"] and pruned["history"] == full["history"]
    net = torch.nn.Linear(8, 4)
    history = load_checkpoint(ck, {"model": net, "labels": [0, 0]}, config_hash({"lr": 0.1}))
    assert history == full["history"] and len(history) == 3
    assert torch.equal(net.weight, full["state"]["model"][1]["weight"])
    m = json.loads((out.parent / "manifest.json").read_text())
    assert m["files"]["m/checkpoints/stage1.pt"] == ck.stat().st_size and "pruned" in m
    assert rs.prune("t", tmp_path / "res") == []  # pruning twice changes nothing
    assert (ck.parent / "final_weights.pt").exists()  # a plain state dict is not a training checkpoint: left alone


def test_prune_leaves_unfinished_runs_alone(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'smoke'  # p", TRAIN, "1 / 0")
    with pytest.raises(NotebookError): run_notebook(path)
    staging = next((tmp_path / "res" / "t").iterdir())
    ck = staging / "m" / "checkpoints" / "stage1.pt"
    size = ck.stat().st_size
    assert rs.prune(results_dir=tmp_path / "res") == [] and ck.stat().st_size == size
    with pytest.raises(BadInputError, match="not a finished result set"): rs.prune_set(staging)


# ---------------------------------------------------------------- command line

def reid_nb(*args, cwd, **kw):
    script = Path(sys.executable).parent / "reid-nb"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c",
                                                 "import sys; from reid_nb.cli import main; sys.exit(main())"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=120, **kw)


def test_cli_params_and_run(project, tmp_path, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY, "print('epoch 1 of 1')")
    r = reid_nb("params", "t", cwd=project)  # an experiment's name works as well as its path
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["profile  str    'default'  # smoke | default | paper",
                                         "n        int    3          # how many"]
    assert main(["run", str(path), "-p", "nn", "4"]) == 2
    assert "unknown parameter 'nn' (did you mean 'n'?)" in capsys.readouterr().err
    assert not (path.parent / "seen.json").exists()
    r = reid_nb("run", str(path), "-p", "n", "4", "-p", "sizes", "[5, 6]", "--profile", "smoke", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    copy = Path(lines[-1])
    assert copy.parent.parent == tmp_path / "res" / "t" and copy.name == "t.ipynb" and copy.exists()
    assert "epoch 1 of 1" in lines and f"result set {copy.parent}" in lines
    assert json.loads((path.parent / "seen.json").read_text())["sizes"] == [5, 6]
    assert "IPKernelApp" not in r.stderr  # the kernel's own warnings go to kernel.log in the set
    assert (copy.parent / "kernel.log").exists()


def test_cli_argument_conflicts():
    with pytest.raises(BadInputError, match="given twice"): pa._given([["n", "1"], ["n", "2"]], None)
    with pytest.raises(BadInputError, match="profile once"): pa._given([["profile", "smoke"]], "default")
    assert pa._given([["profile", "smoke"], ["n", "1"]], None) == ({"n": "1"}, "smoke")
    with pytest.raises(BadInputError, match="-o/--output"): pa._given([["output", "x.ipynb"]], None)
    with pytest.raises(BadInputError, match="-p force: reserved"): pa._given([["force", "1"]], None)


# ---------------------------------------------------------------- reproduce

# Writes a "table" the way write_table does (a .csv and a .md under results/), without importing torch in the kernel.
TABLE = '''import os, pathlib
out = pathlib.Path(os.environ["REID_NB_RESULTS"]) / NAME; out.mkdir(parents=True, exist_ok=True)
(out / "table.csv").write_text(f"profile,seed\\n{profile},{seed}\\n"); (out / "table.md").write_text("|profile|")
(out / "checkpoints").mkdir(exist_ok=True); (out / "checkpoints" / "last.pt").write_bytes(b"0")'''
TABLE_T = "NAME = 'tab'\n" + TABLE


def test_experiment_order_and_only(tmp_path):
    for n in ["zeta", "calr", "datasets", "uga", ".hidden", "_draft", "alpha"]:
        make_notebook(tmp_path / f"{n}.ipynb", "profile = 'default'  # p")
    assert [p.stem for p in pa.experiment_notebooks(tmp_path)] == ["datasets", "uga", "calr", "alpha", "zeta"]
    assert [p.stem for p in pa.experiment_notebooks(tmp_path, ["zeta", "uga"])] == ["uga", "zeta"]
    with pytest.raises(BadInputError, match="--only stgl: no such experiment"):
        pa.experiment_notebooks(tmp_path, ["stgl"])


def test_reproduce_runs_all_in_order_and_reports_failures(project, tmp_path, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "zeta.ipynb", "profile = 'default'  # p\nseed = 0  # s\nNAME = 'zeta'  # n", TABLE)
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p", "raise RuntimeError('broken on purpose')")
    make_notebook(exp / "datasets.ipynb", "profile = 'default'  # p\ndataset = 'synth'  # d\nseed = 0  # s\n"
                  "NAME = 'datasets'  # n", TABLE, "print('streamed line')")
    opened = []
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: opened.append(a))  # the world build is tested in synth
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)  # the start is tested in test_start
    monkeypatch.chdir(project)
    assert main(["reproduce", "--profile", "smoke", "--seed", "3"]) == 1
    out, err = capsys.readouterr()
    assert opened == [("synth", "smoke", "")]
    assert [l.split("] ")[1] for l in out.splitlines() if l.startswith("[")] == ["datasets (seed 3)", "uga", "zeta (seed 3)"]
    res = tmp_path / "res"
    ds, zeta = the_set(res, "datasets"), the_set(res, "zeta")
    assert ds.name.startswith("synth-smoke-s3-") and zeta.name.startswith("smoke-s3-")
    assert f"wrote {ds / 'datasets' / 'table.csv'}" in out and f"wrote {zeta / 'zeta' / 'table.md'}" in out
    assert out.count("wrote") == 4 and out.count("and 2 other files (.log, .pt)") == 2
    assert "streamed line" in out
    assert (zeta / "zeta" / "table.csv").read_text() == "profile,seed\nsmoke,3\n"
    assert [p.name.endswith(".partial") for p in (res / "uga").iterdir()] == [True]
    assert "FAILED uga" in err and "broken on purpose" in err and "1 experiment notebook(s) failed" in out
    assert main(["reproduce", "--profile", "smoke", "--only", "zeta"]) == 0
    assert main(["reproduce", "--only", "nope"]) == 2


def test_reproduce_checks_every_notebook_before_building_anything(project, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "zeta.ipynb", "profile = 'default'  # p\nseed = 0  # [int, at least 0] s", "x = 1")
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p\ndataset = 'synth'  # [synth|market1501] d", "x = 1")
    opened = []
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: opened.append(a))
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): opened.append(profile))
    monkeypatch.chdir(project)
    assert main(["reproduce", "--dataset", "veri"]) == 2
    err = capsys.readouterr().err
    assert "uga.ipynb" in err and "parameter dataset: 'veri' is not one of synth|market1501" in err and not opened


THREADS = TABLE + """
(out / "threads.txt").write_text(os.environ.get("OMP_NUM_THREADS", "unset")); print("cell line", NAME, seed)"""


def set_of_seed(res, stem, seed):
    """The finished set of `stem` for training seed `seed` under `res`."""
    sets = [p for p in (res / stem).iterdir() if (p / "manifest.json").exists()
            and json.loads((p / "manifest.json").read_text())["parameters"]["seed"] == seed]
    assert len(sets) == 1, sets
    return sets[0]


def test_reproduce_runs_seeds_at_once_in_workers_with_their_share_of_threads(project, tmp_path, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    for name in ("uga", "stgal"):
        make_notebook(exp / f"{name}.ipynb", f"profile = 'default'  # p\nseed = 0  # s\nNAME = '{name}'  # n", THREADS)
    make_notebook(exp / "calr.ipynb", "profile = 'default'  # p\nseed = 0  # s", "raise RuntimeError(f'bad seed {seed}')")
    make_notebook(exp / "claims.ipynb", "profile = 'default'  # p\nseeds = [0]  # s\nNAME = 'claims'  # n",
                  "seed = -1\n" + TABLE)
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)
    monkeypatch.chdir(project)
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--jobs", "2"]) == 1
    out, err = capsys.readouterr()
    res, threads = tmp_path / "res", str(max(1, len(os.sched_getaffinity(0)) // 2))
    for name in ("uga", "stgal"):
        sets = [set_of_seed(res, name, s) for s in (0, 1)]
        assert [(s / name / "threads.txt").read_text() for s in sets] == [threads, threads]
        assert [f"cell line {name} {s}" in (res / "logs" / f"{name}-s{s}.log").read_text() for s in (0, 1)] == [True] * 2
    assert "6 runs, 2 at a time with" in out and "cell line" not in out  # the cells print to the logs
    finished = [l.split("] ")[1] for l in out.splitlines() if l.startswith("[")]
    assert sorted(finished[:6]) == sorted(f"{n} (seed {s})" for n in ("uga", "stgal", "calr") for s in (0, 1))
    assert finished[6:] == ["claims"]  # alone, after every per-seed run
    assert "FAILED calr (seed 1)" in err and "bad seed 1" in err and "2 experiment notebook(s) failed" in out
    assert main(["reproduce", "--jobs", "0"]) == 2


CHECKED_LOOP = """import time
from reid_nb.core import check_cap, check_loop
n = check_cap(20)
with check_loop("iteration", "toy", 20, n):
    for _ in range(n): time.sleep(0.05)
print("ran", n)"""


def test_run_check_caps_loops_in_a_scratch_folder_and_prints_the_estimate(project, tmp_path, monkeypatch, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "toy.ipynb", "profile = 'default'  # p", CHECKED_LOOP)
    monkeypatch.chdir(project)
    assert main(["run", "toy", "--check"]) == 0
    out = capsys.readouterr().out
    assert "ran 2" in out and "per training iteration: 0.05" in out and "estimated full run on this machine" in out
    scratch = Path(out.split("scratch result set (real results untouched): ")[1].split()[0])
    assert not (tmp_path / "res").exists() and scratch.is_dir() and "reid-nb-check-toy-" in str(scratch)
    e = rn.check_estimate(scratch.parents[2] / "check.jsonl", 10.0)
    assert 10.0 + 18 * 0.05 <= e["estimate"] < 10.0 + 18 * 0.05 + 1  # 18 more iterations of 0.05 s
    assert main(["run", "toy", "--check", "--prune"]) == 2



def test_reproduce_check_runs_every_notebook_capped_in_one_scratch_folder(project, tmp_path, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p\nseed = 0  # s\nm = 20  # m", CHECKED_LOOP + "\nprint('m is', m)")
    make_notebook(exp / "claims.ipynb", "profile = 'default'  # p\nseeds = [0]  # s", CHECKED_LOOP)
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): print("start built in", os.environ[CHECK_ENV]))
    monkeypatch.chdir(project)
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--check", "-p", "m", "7"]) == 0
    out = capsys.readouterr().out
    assert "3 runs (--check: each capped, one at a time)" in out and out.count("ran 2") == 3 and out.count("m is 7") == 2
    scratch = Path(out.split("scratch results (real results untouched): ")[1].split()[0])
    assert "reid-nb-check-reproduce-" in str(scratch) and f"start built in {scratch.parent}" in out
    assert not (tmp_path / "res").exists() and sorted(p.name for p in scratch.iterdir()) == ["claims", "uga"]
    e = rn.check_estimate(scratch.parent / "check.jsonl", 0.0)
    assert 3 * 18 * 0.05 <= e["estimate"] < 3 * 18 * 0.05 + 1  # three loops, 18 more iterations of 0.05 s each
    assert "estimated full run on this machine" in out
    assert main(["reproduce", "--profile", "smoke", "--check", "-p", "m", "7", "-p", "uga:m", "9"]) == 0
    assert capsys.readouterr().out.count("m is 9") == 1  # NOTEBOOK:NAME wins over NAME for that notebook
    for bad, why in ((["-p", "nope", "1"], "-p nope: no experiment notebook that runs declares 'nope' (running: uga, "
                                           "claims)"),
                     (["-p", "claims:m", "1"], "-p claims:m: no experiment notebook that runs declares 'm'"),
                     (["-p", "uga:seed", "1"], "-p uga:seed: set by reproduce's own options"),
                     (["--check", "--prune"], "--check writes only to a scratch folder")):
        assert main(["reproduce", "--profile", "smoke", *bad]) == 2
        assert why in capsys.readouterr().err


def test_reproduce_skips_a_notebook_that_refuses_the_dataset_and_says_why(project, tmp_path, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p\ndataset = 'synth'  # [synth|msmt17] d\nNAME = 'uga'  # n",
                  "seed = 0\n" + TABLE)
    make_notebook(exp / "stgal.ipynb", "profile = 'default'  # p\ndataset = 'synth'  # [synth|market1501] needs a clock",
                  "raise RuntimeError('must not run')")
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)
    monkeypatch.chdir(project)
    assert main(["reproduce", "--profile", "smoke", "--dataset", "msmt17"]) == 0
    out = capsys.readouterr().out
    skipped = [l for l in out.splitlines() if l.startswith("skipped stgal: stgal.ipynb: parameter dataset: 'msmt17' is "
                                                       "not one of synth|market1501")]
    assert len(skipped) == 1 and skipped[0].endswith("(declared [synth|market1501]); needs a clock")
    assert "1 notebooks, 1 runs" in out and the_set(tmp_path / "res", "uga")
    assert main(["reproduce", "--profile", "smoke", "--dataset", "veri"]) == 2  # refused by every notebook
    assert "--dataset veri: no experiment notebook runs on it" in capsys.readouterr().err

# ---------------------------------------------------------------- the real datasets notebook

@pytest.mark.slow
def test_datasets_notebook_smoke(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    nbs = root / "nbs"
    before = snapshot(nbs)
    out = run_notebook(nbs / "experiments" / "datasets.ipynb", profile="smoke")
    assert out.parent == rs.find_result_set("datasets", tmp_path / "res", profile="smoke", dataset="synth", world="")
    assert out.parent.name.startswith("synth-smoke-") and out.name == "datasets.ipynb"
    md = (out.parent / "datasets" / "tiny-s0-smoke.md").read_text()
    csv_lines = (out.parent / "datasets" / "tiny-s0-smoke.csv").read_text().splitlines()
    assert "synth" in md.splitlines()[0] and "smoke" in md.splitlines()[0] and "Market-1501" in md
    assert csv_lines[0].startswith("split,statistic") and len(csv_lines) > 10
    assert any(l.startswith("train,images,") and l.split(",")[3] == "12936" for l in csv_lines)
    assert (out.parent / "datasets" / "tiny-s0-smoke.png").stat().st_size > 1000
    assert snapshot(nbs) == before


# ---------------------------------------------------------------- which sets claims and compare read; resuming
METHOD = ("profile = 'default'  # p\ndataset = 'synth'  # d\nworld = ''  # w\nseed = 0  # s\n"
          "settings = {}  # changes\nextras = True  # e\nlr = 0.1  # a value given as text by -p\nNAME = 'uga'  # n")


def git_checkout(root):
    """Make the fake project a git checkout with one commit (the manifests then record it)."""
    run = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True)
    run("init", "-q"); run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fake project")


def test_claims_and_compare_read_reproduces_sets_not_the_newest(project, tmp_path, monkeypatch):
    """Case 1 of issue 26: an experiment run after `reproduce` (other settings) is never taken for the method's row."""
    uga = make_notebook(project / "nbs" / "experiments" / "uga.ipynb", METHOD, TABLE)
    monkeypatch.chdir(project)
    made = rn.run_notebook(uga, profile="smoke", seed=0).parent  # what reproduce runs for seed 0 (extras on)
    second = rn.run_notebook(uga, profile="smoke", seed=1, extras=False).parent  # and for seed 1
    experiment = rn.run_notebook(uga, profile="smoke", seed=0, settings={"stage2_epochs": 3}).parent  # newer
    assert rs.find_result_set("uga", seed=0) == experiment  # "the newest set" would have taken it
    chosen = rs.chosen_sets("uga", [0, 1, 2], profile="smoke", dataset="synth", world="")
    assert chosen[0] == (made, None) and chosen[1] == (second, None)
    assert chosen[2] == (None, "n/a: no uga result set for seed 2 (reid-nb run uga --profile smoke -p seed 2 "
                               "-p extras false)")
    assert rs.chosen_sets("uga", [0], {"uga": {"0": str(experiment)}}, profile="smoke")[0] == (experiment, None)
    assert rs.chosen_sets("uga", [1], {"uga": {}}, profile="smoke")[1][1].startswith("n/a: the sets parameter names")
    with pytest.raises(BadInputError, match=r"sets\['uga'\]\['0'\] = .*: not a finished uga result set of seed 0"):
        rs.chosen_sets("uga", [0], {"uga": {"0": str(second)}}, profile="smoke")


def test_a_stopped_reproduce_reuses_finished_sets_and_names_them_for_claims(project, tmp_path, monkeypatch, capsys):
    """Cases 1 and 10 of issue 26: a rerun reuses the finished sets of the same configuration and commit (no `.2`),
    and `claims` is given the sets reproduce made."""
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", METHOD, TABLE)
    make_notebook(exp / "claims.ipynb", "profile = 'default'  # p\nseeds = [0]  # s\nsets = {}  # named sets\n"
                  "NAME = 'claims'  # n", "import json\nseed = -1\n" + TABLE
                  + "\n(out / 'sets.json').write_text(json.dumps(sets))")
    git_checkout(project)
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)
    monkeypatch.chdir(project)
    lr = ["-p", "uga:lr", "0.5"]  # text converted to the declared float: the keys must be the runs' own
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--jobs", "1", *lr]) == 0
    res = tmp_path / "res"
    first = {s: set_of_seed(res, "uga", s) for s in (0, 1)}
    named = json.loads((the_set(res, "claims") / "claims" / "sets.json").read_text())
    assert named == {"uga": {str(s): str(first[s]) for s in (0, 1)}}
    capsys.readouterr()
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--jobs", "1", *lr]) == 0
    out = capsys.readouterr().out
    assert out.count("reused the finished set") == 3  # both seeds and claims (same sets named, same key)
    assert sorted(p.name for p in (res / "uga").iterdir()) == sorted(p.name for p in first.values())  # no .2
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "--jobs", "1", "--fresh", *lr]) == 0
    assert len(list((res / "uga").iterdir())) == 3 and "reused" not in capsys.readouterr().out


def test_publish_copies_a_finished_reproduce_stamped_and_complete(project, tmp_path, monkeypatch):
    """issue 22: `publish` copies the pages of the sets reproduce made (never a number by hand), stamped with commit
    and set keys; an incomplete reproduce is not published; a file publish did not write is never deleted."""
    from reid_nb.publish import publish
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", METHOD, TABLE, "import os; print('ran in', os.getcwd())")
    make_notebook(exp / "claims.ipynb", "profile = 'default'  # p\nseeds = [0]  # s\nsets = {}  # named sets\n"
                  "worlds = []  # [list] the claims map's worlds\nNAME = 'claims'  # n", "seed = -1\n" + TABLE)
    git_checkout(project)
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)
    monkeypatch.chdir(project)
    with pytest.raises(BadInputError, match=r"no finished result set for uga \(seed 0\); uga \(seed 1\); claims"):
        publish("smoke", seeds=[0, 1])
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--jobs", "1"]) == 0
    out = publish("smoke", seeds=[0, 1])
    assert out == project / "docs" / "results"
    snap = json.loads((out / "snapshot.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert [(r["notebook"], r["seed"], r["commit"]) for r in snap["sets"]] == [
        ("uga", 0, commit), ("uga", 1, commit), ("claims", None, commit)]
    assert snap["files"] == ["claims.ipynb", "claims/table.csv", "claims/table.md", "uga.ipynb", "uga/table.csv",
                             "uga/table.md"]  # the first seed's page; checkpoints stay in the set
    page = nbformat.read(out / "uga.ipynb", as_version=4)
    assert page.cells[0].source.startswith("> **Published snapshot**") and commit in page.cells[0].source
    assert "ran in nbs/experiments" in json.dumps(page.cells[-1].outputs) and str(project) not in json.dumps(page)
    assert (out / "uga" / "table.csv").read_text() == "profile,seed\nsmoke,0\n"
    assert f"[uga](uga.ipynb) | `results/uga/{snap['sets'][0]['set'].split('/')[-1]}`" in (out / "README.md").read_text()
    (out / "mine.txt").write_text("a user's note")
    with pytest.raises(BadInputError, match="holds files no snapshot wrote \\(mine.txt\\)"): publish("smoke", seeds=[0, 1])
    (out / "mine.txt").unlink()
    assert main(["publish", "--profile", "smoke", "--seeds", "0", "1"]) == 0  # the command line: replaced in one step
    assert (out / "snapshot.json").exists() and not (project / "docs" / "results.partial").exists()
    with pytest.raises(BadInputError, match=r"run `reid-nb reproduce --profile smoke -p lr 0.5` with the same"):
        publish("smoke", seeds=[0, 1], params={"lr": "0.5"})  # a reproduce given -p is published with its -p
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "1", "--jobs", "1", "-p", "lr", "0.5"]) == 0
    assert main(["publish", "--profile", "smoke", "--seeds", "0", "1", "-p", "lr", "0.5"]) == 0
    given = json.loads((out / "snapshot.json").read_text())
    assert given["params"] == {"lr": "0.5"} and given["sets"][0]["set"] != snap["sets"][0]["set"]  # the -p run's set
    assert "executed by `reid-nb reproduce --profile smoke -p lr 0.5`" in nbformat.read(out / "uga.ipynb", 4).cells[0].source
    with pytest.raises(BadInputError, match=r"no finished claims map over tiny w2: run `reid-nb reproduce --profile "
                                            r"smoke --worlds tiny w2` first"):
        publish("smoke", seeds=[0, 1], worlds=["tiny", "w2"])
    assert main(["run", "claims", "--profile", "smoke", "-p", "worlds", '["tiny", "w2"]']) == 0  # a map's run
    assert main(["publish", "--profile", "smoke", "--seeds", "0", "1", "--worlds", "tiny", "w2"]) == 0
    snap = json.loads((out / "snapshot.json").read_text())
    assert [r.get("page") for r in snap["sets"]] == [None, None, None, "claims_map"] and snap["worlds"] == ["tiny", "w2"]
    assert {"claims_map.ipynb", "claims_map/table.csv", "claims/table.csv"} <= set(snap["files"])
    assert "the claims map over the worlds `tiny`, `w2`" in nbformat.read(out / "claims_map.ipynb", 4).cells[0].source
    assert "[claims_map](claims_map.ipynb)" in (out / "README.md").read_text()


# ---------------------------------------------------------------- interrupts (issue 26, case 3)

# Says it started (in the worker's log), then "trains" for a minute, writing one checkpoint file per epoch.
SLOW_SEED = '''import os, pathlib, time
ck = pathlib.Path(os.environ["REID_NB_RESULTS"]) / "ck"; ck.mkdir(exist_ok=True)
print("started", seed, flush=True)
for e in range(600):
    (ck / f"e{e}").write_text(str(e))
    time.sleep(0.1)'''
# The driver as `reid-nb reproduce`, without building the world and the start (tested in synth and start).
DRIVER = ("import sys; from reid_nb import reproduce as rp; from reid_nb.cli import main; "
          "rp._open_dataset = lambda *a: None; rp._build_start = lambda profile, seeds=(): None; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("how", ["SIGTERM to the driver", "Ctrl-C to the group"])
def test_an_interrupted_parallel_reproduce_stops_every_worker_and_starts_nothing_new(project, tmp_path, marker, how):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p\nseed = 0  # s", SLOW_SEED)
    make_notebook(exp / "claims.ipynb", "profile = 'default'  # p\nseeds = [0]  # s", "x = 1")
    p = subprocess.Popen([sys.executable, "-c", DRIVER, "reproduce", "--profile", "smoke", "--seeds", "0", "1", "2",
                          "--jobs", "2"], cwd=project, env=marker.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    res, deadline = tmp_path / "res", time.time() + 120
    logs = [res / "logs" / f"uga-s{s}.log" for s in (0, 1)]
    while time.time() < deadline and not all(l.exists() and "started" in l.read_text() for l in logs):
        assert p.poll() is None, p.communicate()
        time.sleep(0.2)
    if how == "SIGTERM to the driver": os.kill(p.pid, signal.SIGTERM)
    else: os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == (143 if how.startswith("SIGTERM") else 130), (out, err)
    assert err.strip().count("\n") == 0 and err.count("interrupted") == 1 and "Traceback" not in out + err, err
    assert err.startswith(f"reid-nb: interrupted ({'SIGTERM' if how.startswith('SIGTERM') else 'Ctrl-C'}): every run "
                          "stopped")
    deadline = time.time() + 5
    while marker.alive() and time.time() < deadline: time.sleep(0.2)
    assert marker.alive() == []  # no worker, no kernel goes on
    partial = sorted((res / "uga").iterdir())
    assert len(partial) == 2 and all(s.name.endswith(".partial") for s in partial)  # seed 2 never started
    assert not (res / "logs" / "uga-s2.log").exists() and not (res / "claims").exists()
    for s in partial:  # resumable: the lock is free and the checkpoints are there
        with open(s / rs.LOCK, "a") as lock: fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert (s / "ck" / "e0").exists()
    time.sleep(1)
    assert sorted((res / "uga").iterdir()) == partial and all(not (s / "manifest.json").exists() for s in partial)


def test_the_budget_sweep_adds_the_first_seeds_runs_and_compare_reads_them_by_their_parameters(project, tmp_path,
                                                                                              monkeypatch):
    """issue 23: `--budget-sweep` adds the first seed's runs at every multiplier of `BUDGET_SWEEP` (main rows only), tells
    `compare` the multipliers, never names a sweep set for claims or compare, and `chosen_sets` finds each by its
    parameters."""
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "uga.ipynb", METHOD + "\nbudget_scale = 1.0  # b\nablation = True  # a", TABLE)
    make_notebook(exp / "compare.ipynb", "profile = 'default'  # p\nseeds = [0]  # s\nsets = {}  # named sets\n"
                  "budget_scales = []  # m\nNAME = 'compare'  # n", "seed = -1\n" + TABLE)
    git_checkout(project)
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: None)
    monkeypatch.setattr(rp, "_build_start", lambda profile, seeds=(): None)
    monkeypatch.chdir(project)
    plain = rp.planned_sets("smoke", seeds=[0, 1])
    swept = rp.planned_sets("smoke", seeds=[0, 1], budget_sweep=True)
    uga = [v for p, v, _ in swept if p.stem == "uga"]
    assert [(v["seed"], v.get("budget_scale", 1.0)) for v in uga] == [(0, 1.0), (1, 1.0), (0, 0.25), (0, 0.5), (0, 2.0)]
    assert all(v["extras"] is False and v["ablation"] is False for v in uga[2:])
    assert [v.get("budget_scales") for p, v, _ in swept if p.stem == "compare"] == [[0.25, 0.5, 1.0, 2.0]]
    assert [v for p, v, _ in plain if p.stem == "uga"] == uga[:2]
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "--jobs", "1", "--budget-sweep"]) == 0
    res = tmp_path / "res"
    scale = lambda f: json.loads((f / "manifest.json").read_text())["parameters"].get("budget_scale", 1.0)
    main_set, = [f for f in (res / "uga").iterdir() if scale(f) == 1.0]
    named = [v["sets"] for p, v, _ in rp.planned_sets("smoke", seeds=[0], budget_sweep=True) if p.stem == "compare"]
    assert named == [{"uga": {"0": str(main_set)}}] and len(list((res / "uga").iterdir())) == 4
    half, = rs.chosen_sets("uga", [0], {}, rs.sweep_params(0.5), profile="smoke", dataset="synth", world="").values()
    assert half[1] is None and scale(half[0]) == 0.5


def test_a_set_trained_in_bf16_never_shares_a_key_with_an_fp32_one(monkeypatch):
    """The precision the profile trains in on this machine is part of the key (fp32 keys are those of before)."""
    from reid_nb import core
    p = {"dataset": "synth", "profile": "default", "seed": 0}
    monkeypatch.setattr(core, "cpu_bf16", lambda: False)
    fp32, smoke = rs.set_key(p), rs.set_key(p | {"profile": "smoke"})
    assert fp32 == "synth-default-s0-" + rs.config_hash(p, 8)
    monkeypatch.setattr(core, "cpu_bf16", lambda: True)
    assert rs.set_key(p) != fp32 and rs.set_key(p | {"profile": "smoke"}) == smoke
    monkeypatch.setenv(core.CPU_BF16_ENV, "0")
    assert rs.set_key(p) == fp32


def test_the_longest_runs_of_a_phase_go_first():
    """Notebook weight x budget scale, largest first; equal ones keep their order (seed 0 before seed 1)."""
    runs = [(Path(f"{nb}.ipynb"), {"seed": s, "budget_scale": x}) for x in (1.0, 2.0) for nb in ("uga", "stgal", "calr")
            for s in (0, 1)]
    order = [(p.stem, v["budget_scale"], v["seed"]) for p, v in rp._longest_first(runs)]
    expect = [(nb, x, s) for nb, x in (("calr", 2.0), ("stgal", 2.0), ("calr", 1.0), ("uga", 2.0), ("stgal", 1.0),
                                       ("uga", 1.0)) for s in (0, 1)]
    assert order == expect
