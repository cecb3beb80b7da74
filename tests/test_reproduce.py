"""The papermill driver and the `reid-nb` command line: strict parameters, where runs go, failures, reproduce."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from reid_nb.core import BadInputError
from reid_nb import reproduce as rp
from reid_nb.reproduce import (NotebookError, Param, check_parameters, coerce_value, main, notebook_parameters,
                               run_notebook)

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


# ---------------------------------------------------------------- running

def test_bad_parameters_are_refused_before_anything_runs(project, tmp_path):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY)
    for bad in [{"nn": 4}, {"n": "4.5"}, {"profile": "huge"}]:
        with pytest.raises(BadInputError): run_notebook(path, **bad)
    with pytest.raises(BadInputError): run_notebook(path, profile="huge")
    assert not (path.parent / "seen.json").exists() and not (tmp_path / "res").exists()


def test_run_writes_the_executed_copy_under_results_runs(project, tmp_path, monkeypatch):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY)
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the notebook still runs in its own folder
    before = snapshot(project / "nbs")
    out = run_notebook(path, profile="smoke", n="5", sizes=[3], fast="1", rate=2)
    assert out == tmp_path / "res" / "runs" / "t-smoke.ipynb" and out.exists()
    seen = json.loads((path.parent / "seen.json").read_text())
    assert seen == {"cwd": str(path.parent.resolve()), "n": 5, "rate": 2.0, "fast": True, "sizes": [3],
                    "profile": "smoke"}
    (path.parent / "seen.json").unlink()
    assert snapshot(project / "nbs") == before  # the source notebook is untouched, no copy in nbs/
    done = nbformat.read(out, 4)
    assert done.metadata.kernelspec.name == "python3"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in done.cells)
    assert sorted(p.name for p in out.parent.iterdir()) == ["t-smoke.ipynb"]  # no temporary file left
    # without a profile the notebook's default names the copy
    assert run_notebook(path).name == "t-default.ipynb"


def test_default_results_root_is_the_notebooks_project(project, tmp_path, monkeypatch):
    monkeypatch.delenv("REID_NB_RESULTS")
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", "profile = 'default'  # p\npath = ''  # a path",
                         "assert path == 'x'")
    monkeypatch.chdir(tmp_path)  # a parameter may be called `path`, like run_notebook's first argument
    assert run_notebook(path, profile="smoke", path="x") == project / "results" / "runs" / "t-smoke.ipynb"


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
    runs = tmp_path / "res" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["t-smoke.failed.ipynb"] and "t-smoke.failed.ipynb" in msg
    # a later good run replaces the failed copy
    make_notebook(path, PARAMS, "y = 1")
    run_notebook(path, profile="smoke")
    assert sorted(p.name for p in runs.iterdir()) == ["t-smoke.ipynb"]


# ---------------------------------------------------------------- command line

def reid_nb(*args, cwd):
    script = Path(sys.executable).parent / "reid-nb"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c",
                                                 "import sys; from reid_nb.reproduce import main; sys.exit(main())"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_params_and_run(project, tmp_path, capsys):
    path = make_notebook(project / "nbs" / "experiments" / "t.ipynb", PARAMS, BODY)
    r = reid_nb("params", "t", cwd=project)  # an experiment's name works as well as its path
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["profile  str    'default'  # smoke | default | paper",
                                         "n        int    3          # how many"]
    assert main(["run", str(path), "-p", "nn", "4"]) == 2
    assert "unknown parameter 'nn' (did you mean 'n'?)" in capsys.readouterr().err
    assert not (path.parent / "seen.json").exists()
    r = reid_nb("run", str(path), "-p", "n", "4", "-p", "sizes", "[5, 6]", "--profile", "smoke", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == tmp_path / "res" / "runs" / "t-smoke.ipynb"
    assert json.loads((path.parent / "seen.json").read_text())["sizes"] == [5, 6]


def test_cli_argument_conflicts():
    with pytest.raises(BadInputError, match="given twice"): rp._given([["n", "1"], ["n", "2"]], None)
    with pytest.raises(BadInputError, match="profile once"): rp._given([["profile", "smoke"]], "default")
    assert rp._given([["profile", "smoke"], ["n", "1"]], None) == ({"n": "1"}, "smoke")
    with pytest.raises(BadInputError, match="-o/--output"): rp._given([["output", "x.ipynb"]], None)


# ---------------------------------------------------------------- reproduce

# Writes a "table" the way write_table does (a .csv and a .md under results/), without importing torch in the kernel.
TABLE = '''import os, pathlib
out = pathlib.Path(os.environ["REID_NB_RESULTS"]) / NAME; out.mkdir(parents=True, exist_ok=True)
(out / "table.csv").write_text(f"profile,seed\\n{profile},{seed}\\n"); (out / "table.md").write_text("|profile|")
(out / "checkpoints").mkdir(exist_ok=True); (out / "checkpoints" / "last.pt").write_bytes(b"0")'''


def test_experiment_order_and_only(tmp_path):
    for n in ["zeta", "calr", "datasets", "uga", ".hidden", "_draft", "alpha"]:
        make_notebook(tmp_path / f"{n}.ipynb", "profile = 'default'  # p")
    assert [p.stem for p in rp.experiment_notebooks(tmp_path)] == ["datasets", "uga", "calr", "alpha", "zeta"]
    assert [p.stem for p in rp.experiment_notebooks(tmp_path, ["zeta", "uga"])] == ["uga", "zeta"]
    with pytest.raises(BadInputError, match="--only stgl: no such experiment"):
        rp.experiment_notebooks(tmp_path, ["stgl"])


def test_reproduce_runs_all_in_order_and_reports_failures(project, tmp_path, monkeypatch, capsys):
    exp = project / "nbs" / "experiments"
    make_notebook(exp / "zeta.ipynb", "profile = 'default'  # p\nseed = 0  # s\nNAME = 'zeta'  # n", TABLE)
    make_notebook(exp / "uga.ipynb", "profile = 'default'  # p", "raise RuntimeError('broken on purpose')")
    make_notebook(exp / "datasets.ipynb", "profile = 'default'  # p\ndataset = 'synth'  # d\nseed = 0  # s\n"
                  "NAME = 'datasets'  # n", TABLE)
    opened = []
    monkeypatch.setattr(rp, "_open_dataset", lambda *a: opened.append(a))  # the world build is tested in synth
    monkeypatch.chdir(project)
    assert main(["reproduce", "--profile", "smoke", "--seed", "3"]) == 1
    out, err = capsys.readouterr()
    assert opened == [("synth", "smoke", 3)]
    assert [l.split("] ")[1] for l in out.splitlines() if l.startswith("[")] == ["datasets", "uga", "zeta"]
    res = tmp_path / "res"
    assert f"wrote {res / 'datasets' / 'table.csv'}" in out and f"wrote {res / 'zeta' / 'table.md'}" in out
    assert out.count("wrote") == 4 and out.count("and 1 other files (.pt)") == 2
    assert (res / "zeta" / "table.csv").read_text() == "profile,seed\nsmoke,3\n"
    assert sorted(p.name for p in (res / "runs").iterdir()) == [
        "datasets-smoke.ipynb", "uga-smoke.failed.ipynb", "zeta-smoke.ipynb"]
    assert "FAILED uga" in err and "broken on purpose" in err and "1 experiment notebook(s) failed" in out
    assert main(["reproduce", "--profile", "smoke", "--only", "zeta"]) == 0
    assert main(["reproduce", "--only", "nope"]) == 2


# ---------------------------------------------------------------- the real datasets notebook

@pytest.mark.slow
def test_datasets_notebook_smoke(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    nbs = root / "nbs"; before = snapshot(nbs)
    out = run_notebook(nbs / "experiments" / "datasets.ipynb", profile="smoke")
    assert out == tmp_path / "res" / "runs" / "datasets-smoke.ipynb"
    md = (tmp_path / "res" / "datasets" / "synth-smoke.md").read_text()
    csv_lines = (tmp_path / "res" / "datasets" / "synth-smoke.csv").read_text().splitlines()
    assert "synth" in md.splitlines()[0] and "smoke" in md.splitlines()[0] and "Market-1501" in md
    assert csv_lines[0].startswith("split,statistic") and len(csv_lines) > 10
    assert any(l.startswith("train,images,") and l.split(",")[3] == "12936" for l in csv_lines)
    assert (tmp_path / "res" / "datasets" / "synth-smoke.png").stat().st_size > 1000
    assert snapshot(nbs) == before
