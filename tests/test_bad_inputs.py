"""The bad-input suite: every input problem and fault a user met (issue 12), and the ones handled before, each ends in
one message naming the file or field and what was expected, or in a counted note; none in a traceback, a silent
change or a lost file. Add a case here whenever a new one is found."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from reid_nb import sets as rs
from reid_nb.cli import main
from reid_nb.core import BadInputError, data_root, results_root
from reid_nb.data import Records, load_dataset, verify_images
from reid_nb.params import check_parameters, notebook_parameters
from reid_nb.runner import NotebookError, run_notebook
from reid_nb.data import open_dataset
from reid_nb.world import make_world

ROOT = Path(__file__).resolve().parents[1]
MARKET = "market1501/Market-1501-v15.09.15"
MSMT = "msmt17_v1/MSMT17_V1"
REID_NB = Path(sys.executable).parent / "reid-nb"


def make_notebook(path, params, *bodies):
    """A notebook: one cell tagged `parameters`, then code cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(b) for b in bodies]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def script(name):
    """A data_scripts/ script's module, to call its main() in this process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    return tmp_path / "res"


@pytest.fixture
def uga_like(tmp_path):
    """A notebook whose parameters look like UGA's, with declarations, and whose body records that it ran."""
    return make_notebook(tmp_path / "nb" / "uga_like.ipynb",
                         'profile = "smoke"  # [smoke|default|paper] p\nseed = 0  # [int, at least 0] one seed\n'
                         'k = 3  # [int, at least 1] K: mutual nearest neighbours\n'
                         'sstt_period_s = 5.0  # [float, above 0] P\nfeature = "camera_bn"  # [camera_bn|pooled] f',
                         "import os, pathlib\np = pathlib.Path(os.environ['REID_NB_RESULTS'])\n"
                         "(p / 'tracklets.csv').write_text(f'P,{sstt_period_s}\\n')\n"
                         "(p / 'results.csv').write_text(f'k,{k}\\nseed,{seed}\\n')")


# ------------------------------------------------------------------ nothing of the user's is overwritten or deleted

def test_output_notebook_of_the_user_is_not_overwritten(tmp_path, results, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # `datasets` is found in nbs/experiments/
    mine = tmp_path / "my_analysis.ipynb"
    mine.write_text("my own work")
    mine.chmod(0o644)
    assert main(["run", "datasets", "--profile", "smoke", "-o", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"output {mine}: exists" in err and "--force" in err
    assert mine.read_text() == "my own work" and mine.stat().st_mode & 0o777 == 0o644
    assert not results.exists()  # refused before anything ran


def test_world_folder_with_the_users_files_is_not_replaced(tmp_path, capsys):
    w = make_world(tmp_path / "W", "tiny", seed=0, workers=1)
    (w / "notes.md").write_text("my notes")
    code = script("make_synth").main(["--preset", "tiny", "--seed", "1", "--out", str(w), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1 and f"out {w}: holds 1 file(s)" in err and "'notes.md'" in err and "--force" in err
    assert (w / "notes.md").read_text() == "my notes"


# ------------------------------------------------------------------ one consistent result set per configuration

def test_changing_a_parameter_after_a_finished_run_trains_anew(uga_like, results):
    first = run_notebook(uga_like).parent
    second = run_notebook(uga_like, sstt_period_s="2.0").parent
    third = run_notebook(uga_like, k="5").parent
    assert len({first, second, third}) == 3
    assert (first / "tracklets.csv").read_text() == "P,5.0\n" and (second / "tracklets.csv").read_text() == "P,2.0\n"
    assert (third / "results.csv").read_text() == "k,5\nseed,0\n"
    assert (first / "results.csv").read_text() == "k,3\nseed,0\n"
    for s in (first, second, third):  # each set says which configuration wrote it
        assert json.loads((s / "manifest.json").read_text())["parameters"]["k"] in (3, 5)


def test_seed_and_world_are_in_the_set_name_and_never_overwrite(tmp_path, results):
    path = make_notebook(tmp_path / "nb" / "m.ipynb", 'profile = "smoke"  # p\ndataset = "synth"  # d\n'
                         'world = "tiny"  # w\nseed = 0  # s',
                         "import os, pathlib\n(pathlib.Path(os.environ['REID_NB_RESULTS']) / 't.csv')"
                         ".write_text(f'{world},{seed}')")
    s0, s1 = run_notebook(path).parent, run_notebook(path, seed=1).parent
    w = run_notebook(path, world="/data/worlds/crowded").parent
    assert s0.name.startswith("synth-tiny-smoke-s0-") and s1.name.startswith("synth-tiny-smoke-s1-")
    assert w.name.startswith("synth-crowded-smoke-s0-")
    assert [(p / "t.csv").read_text() for p in (s0, s1, w)] == ["tiny,0", "tiny,1", "/data/worlds/crowded,0"]


# ------------------------------------------------------------------ parameter ranges checked before anything runs

def test_out_of_range_parameter_is_refused_before_anything_runs(uga_like, results, capsys):
    assert main(["run", str(uga_like), "-p", "k", "-3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uga_like.ipynb" in err
    assert "parameter k: -3 is out of range; expected at least 1" in err
    assert not results.exists()
    with pytest.raises(BadInputError, match="parameter feature: 'pool' is not one of camera_bn|pooled"):
        run_notebook(uga_like, feature="pool")
    with pytest.raises(BadInputError, match="parameter sstt_period_s: 0.0 is out of range"):
        run_notebook(uga_like, sstt_period_s=0)


def _outside(param):
    """A value the parameter's declaration refuses (None when every value of its type is allowed)."""
    rule = param.rule
    if rule.choices: return "no-such-choice" if param.type is str else max(rule.choices) + 1
    op, bound = rule.bounds[0]
    return {"at least": bound - 1, "above": bound, "at most": bound + 1, "below": bound}[op]


DECLARED = [(nb, name) for nb in sorted((ROOT / "nbs" / "experiments").glob("*.ipynb"))
            for name, p in notebook_parameters(nb).items() if p.rule and (p.rule.choices or p.rule.bounds)]


@pytest.mark.parametrize("nb, name", DECLARED, ids=[f"{nb.stem}:{n}" for nb, n in DECLARED])
def test_experiment_declarations_refuse_values_outside(nb, name):
    param = notebook_parameters(nb)[name]
    value = _outside(param)
    value = [value] if param.type in (list, tuple) else value
    with pytest.raises(BadInputError) as e: check_parameters(nb, {name: value})
    assert nb.name in str(e.value) and f"parameter {name}:" in str(e.value)


# ------------------------------------------------------------------ modes, leftovers, Ctrl-C

def test_results_and_worlds_are_written_with_the_users_umask(uga_like, results, tmp_path):
    old = os.umask(0o002)
    try:
        out = run_notebook(uga_like)
        w = make_world(tmp_path / "W", "tiny", seed=0, workers=1)
    finally: os.umask(old)
    files = [out, out.parent / "manifest.json", out.parent / "results.csv", w / "readme.txt",
             w / "world" / "images.csv"]
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o664, p
    for d in [out.parent, w, w / "world", w / "query"]: assert d.stat().st_mode & 0o777 == 0o775, d


def test_leftovers_of_killed_runs_are_reused_or_removed(uga_like, results, tmp_path):
    key = rs.set_folder(uga_like, rs.effective_parameters(uga_like, {}), results)
    staging = key.with_name(key.name + ".partial")  # what a killed run leaves: its staging folder, half a write
    staging.mkdir(parents=True)
    (staging / ".results.csv.x1y2.tmp").write_text("half")
    out = run_notebook(uga_like)
    assert out.parent == key and not staging.exists() and not list(key.glob(".*.tmp"))
    stale = tmp_path / ".W.tmp-abcd"  # a killed world build
    (stale / "query").mkdir(parents=True)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    make_world(tmp_path / "W", "tiny", seed=0, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".W")) == []


SLOW = "import time\nfor e in range(600):\n    print(f'epoch {e}', flush=True)\n    time.sleep(0.1)"


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_ctrl_c_and_sigterm_stop_a_run_with_one_line(tmp_path, results, marker, how):
    path = make_notebook(tmp_path / "nb" / "slow.ipynb", 'profile = "smoke"  # p', SLOW)
    p = subprocess.Popen([str(REID_NB), "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=tmp_path, env=marker.env(),
                         # a terminal's default Ctrl-C, even if this process ignores it (kernels)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 90
    while time.time() < deadline and "epoch 3" not in (p.stdout.readline() or ""): pass
    if how == "Ctrl-C": os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the foreground group
    else: os.kill(p.pid, signal.SIGTERM)  # what kill, a scheduler or a closed terminal does
    out, err = p.communicate(timeout=240)  # a kernel shuts down slowly on a loaded machine
    assert p.returncode == (130 if how == "Ctrl-C" else 143) and err.strip().count("\n") == 0, err
    assert err.startswith(f"reid-nb: interrupted ({how})") and ".partial" in err and "--fresh starts over" in err
    assert [s.name.endswith(".partial") for s in (results / "slow").iterdir()] == [True]
    assert marker.alive() == []  # the kernel went too



# ------------------------------------------------------------------ read-only folders, prune's folders (issue 26)

# Opens the smoke world and its start as an experiment does, in each data root given; a BadInputError is one line.
OPEN_WORLD = """import os, sys
from reid_nb.core import BadInputError
from reid_nb.start import starting_point
from reid_nb.data import open_dataset
for root in sys.argv[1:]:
    os.environ["REID_NB_DATA"] = root
    try: print(len(open_dataset("synth", "smoke").train), starting_point("smoke"))
    except BadInputError as e: print(f"error: {e}")"""


def test_a_read_only_data_root_is_read_and_what_it_lacks_is_refused_naming_the_folder(tmp_path, monkeypatch, read_only):
    from reid_nb import start
    data, no_start, empty = tmp_path / "data", tmp_path / "no_start", tmp_path / "empty"
    monkeypatch.setenv("REID_NB_DATA", str(data))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    n = len(open_dataset("synth", "smoke").train)  # a complete world and start, then the data root is read-only
    monkeypatch.setattr(start, "_train_start", lambda profile, net, budget, path, device, seed:  # untrained, but a start
                        start.atomic_torch_save(start.new_backbone(net).state_dict(), path))
    weights = start.starting_point("smoke")
    shutil.copytree(data, no_start, symlinks=True)
    (no_start / weights.relative_to(data)).unlink()  # a start to train where nothing can be written
    empty.mkdir()  # a world to build where nothing can be written
    r = read_only([data, no_start, empty], [sys.executable, "-c", OPEN_WORLD, str(data), str(no_start), str(empty)],
                  cwd=tmp_path)
    lines = [line for line in r.stdout.splitlines() if not line.startswith("reusing ")]  # caches say they are reused
    assert r.returncode == 0 and len(lines) == 3 and lines[0] == f"{n} {weights}", r.stdout + r.stderr
    assert lines[1].startswith(f"error: cache folder {no_start / 'starts'}: cannot write there ("), lines
    assert lines[2].startswith(f"error: synthetic world folder {empty / 'synth'}: cannot write there ("), lines


def finished_set_with_a_checkpoint(res):
    """A finished set of notebook `t` under `res` holding one training checkpoint (with an optimiser to prune)."""
    import torch
    from reid_nb.train import run_epochs
    folder = res / "t" / "smoke-s0-abc"
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    run_epochs(1, lambda e, s: {}, {"model": net, "opt": opt}, folder / "ckpt" / "last.pt", config={})
    (folder / "manifest.json").write_text(json.dumps({"format": rs.SET_FORMAT, "key": folder.name, "finished": "x"}))
    return folder, folder / "ckpt" / "last.pt"


def test_prune_of_a_read_only_results_folder_is_refused_naming_it(tmp_path, read_only):
    res = tmp_path / "res"
    folder, ck = finished_set_with_a_checkpoint(res)
    before, env = ck.read_bytes(), {**os.environ, "REID_NB_RESULTS": str(res)}
    r = read_only([res], [str(REID_NB), "prune"], cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stdout == "", r.stderr
    assert r.stderr.startswith(f"reid-nb: error: result set folder {folder}: cannot write there") and \
        "nothing pruned (--dry-run only reads)" in r.stderr
    r = read_only([res], [str(REID_NB), "prune", "--dry-run"], cwd=tmp_path, env=env)
    assert r.returncode == 0 and f"would prune {ck}" in r.stdout and ck.read_bytes() == before, r.stderr


def test_prune_names_a_missing_folder_or_notebook_and_says_when_no_set_is_finished(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "nowhere"))
    assert main(["prune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"results folder {tmp_path / 'nowhere'}: does not exist; nothing to prune" in err
    res = tmp_path / "res"
    monkeypatch.setenv("REID_NB_RESULTS", str(res))
    finished_set_with_a_checkpoint(res)
    (res / "stgal" / "synth-smoke-s0-def.partial").mkdir(parents=True)
    assert main(["prune", "tt", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"prune tt: no result sets of notebook 'tt' in {res}; notebooks with finished " \
                                    "sets there: t" in err, err
    assert main(["prune", "stgal"]) == 0
    assert capsys.readouterr().out == (f"no finished result set in {res / 'stgal'}; nothing to prune (1 unfinished "
                                       "<key>.partial set(s): never pruned)\n")
    shutil.rmtree(res / "t")
    assert main(["prune"]) == 0 and capsys.readouterr().out.startswith(f"no finished result set in {res}; nothing")

# ------------------------------------------------------------------ tracebacks that are now messages

def test_decompression_bomb_image_is_named(fixtures, monkeypatch):
    ds = load_dataset(fixtures / MARKET, "market1501")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4)  # the 8x4 fixture images now exceed twice the guard
    bad = verify_images(ds.query, strict=False)
    assert len(bad) == len(ds.query) and all("too large to decode safely" in why for _, why in bad)
    with pytest.raises(BadInputError) as e: verify_images(ds.query)
    assert ds.query.path[0] in str(e.value)


@pytest.mark.parametrize("var", ["REID_NB_RESULTS", "REID_NB_DATA"])
def test_root_under_a_regular_file_is_named(tmp_path, monkeypatch, var):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv(var, str(tmp_path / "notes.txt" / "sub"))
    root = results_root if var == "REID_NB_RESULTS" else data_root
    with pytest.raises(BadInputError) as e: root()
    assert var in str(e.value) and "notes.txt is a file, not a folder" in str(e.value)


def test_results_root_under_a_file_during_run(uga_like, tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "notes.txt" / "res"))
    assert main(["run", str(uga_like)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "REID_NB_RESULTS" in err and "notes.txt is a file" in err


def test_data_root_under_a_file_when_opening_a_dataset(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "notes.txt"))
    with pytest.raises(BadInputError, match="REID_NB_DATA .*notes.txt is a file"): open_dataset("synth", "smoke")


@pytest.mark.parametrize("out, words", [
    ("{tmp}/notes.txt/W", ["out", "notes.txt is a file, not a folder"]),
    ("/proc/reid-nb-world", ["out", "/proc", "cannot write there"]),
])
def test_make_synth_unusable_out_is_named(tmp_path, capsys, out, words):
    (tmp_path / "notes.txt").write_text("x")
    code = script("make_synth").main(["--preset", "tiny", "--out", out.format(tmp=tmp_path), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and all(w in err for w in words), err


def test_run_output_under_proc_or_a_file_is_named(uga_like, tmp_path, results, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for out, words in [("/proc/x.ipynb", ["output folder /proc", "cannot write there"]),
                       (str(tmp_path / "notes.txt" / "x.ipynb"), ["output folder", "notes.txt is a file"]),
                       (str(tmp_path), ["ending in .ipynb"])]:
        assert main(["run", str(uga_like), "-o", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not results.exists()


def test_negative_seed_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["reproduce", "--profile", "smoke", "--seed", "-1"]) == 2
    assert "--seeds -1: expected distinct integers >= 0" in capsys.readouterr().err
    code = script("make_synth").main(["--preset", "tiny", "--seed", "-2", "--out", str(tmp_path / "W")])
    assert code == 1 and "seed -2: expected an integer >= 0" in capsys.readouterr().err


# ------------------------------------------------------------------ silent acceptance that is now refused or counted

def test_msmt_label_contradicting_the_file_name(copy_tree):
    m = copy_tree(MSMT)
    lines = (m / "list_val.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 7"  # 0001/0001_011_... listed with label 7
    (m / "list_val.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as e: load_dataset(m, "msmt17")
    assert "list_val.txt, line 1: label 7 but the file name" in str(e.value) and "identity 0001" in str(e.value)
    ds = load_dataset(m, "msmt17", strict=False)
    assert ds.skipped["train"] == {"label contradicts the file name": ["list_val.txt:1"]}


def test_five_digit_identity_is_not_merged_with_four(copy_tree):
    m = copy_tree(MARKET)
    src = m / "bounding_box_test" / "0001_c1s1_001101_01.jpg"
    shutil.copy(src, m / "bounding_box_test" / "00001_c2s1_001101_01.jpg")
    with pytest.raises(BadInputError) as e: load_dataset(m, "market1501")
    assert "00001_c2s1_001101_01.jpg" in str(e.value) and "expected a market1501 name" in str(e.value)
    ds = load_dataset(m, "market1501", strict=False)
    assert ds.skipped["gallery"]["malformed name"] == ["bounding_box_test/00001_c2s1_001101_01.jpg"]


# ------------------------------------------------------------------ misleading messages

def test_root_that_is_a_regular_file(tmp_path):
    (tmp_path / "market.zip").write_bytes(b"PK")
    with pytest.raises(BadInputError) as e: load_dataset(tmp_path / "market.zip", "market1501")
    assert "market.zip: is a file, not a folder" in str(e.value) and "does not exist" not in str(e.value)


def test_folder_named_like_an_image(copy_tree):
    m = copy_tree(MARKET)
    (m / "query" / "0001_c2s1_000001_00.jpg").mkdir()
    with pytest.raises(BadInputError) as e: load_dataset(m, "market1501")
    assert "0001_c2s1_000001_00.jpg: is a folder, expected an image" in str(e.value)
    ds = load_dataset(m, "market1501", strict=False)
    assert ds.skipped["query"]["folder named like an image"] == ["query/0001_c2s1_000001_00.jpg"]
    rec = Records.from_rows([{**ds.query.to_rows()[0], "path": str(m / "query" / "0001_c2s1_000001_00.jpg")}])
    assert verify_images(rec, strict=False)[0][1] == "is a folder, not an image file"


def test_strict_messages_name_the_command_line_flag(copy_tree, capsys):
    m = copy_tree(MARKET)
    (m / "query" / "0001_c1s1_0451_01.jpg").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"0001_c1s1_0451_01.jpg: .*--lenient"): load_dataset(m, "market1501")
    code = script("check_dataset").main([str(m), "--dataset", "market1501", "--no-verify"])
    assert code == 1 and "--lenient" in capsys.readouterr().err
    assert script("check_dataset").main([str(m), "--dataset", "market1501", "--no-verify", "--lenient"]) == 0


def test_experiment_name_outside_the_repository_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "uga"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notebook 'uga'" in err and str(tmp_path / "nbs" / "experiments") in err
    assert "give the notebook's path" in err


# ------------------------------------------------------------------ cases handled before (kept from regressing)

@pytest.mark.parametrize("args, words", [
    (["run", "{nb}", "-p", "kk", "3"], ["unknown parameter 'kk'", "did you mean 'k'"]),
    (["run", "{nb}", "-p", "k", "three"], ["parameter k: 'three' does not fit the declared int"]),
    (["run", "{nb}", "-p", "k", "1", "-p", "k", "2"], ["-p k: given twice"]),
    (["run", "{nb}", "-p", "output", "x.ipynb"], ["-p output: reserved"]),
    (["run", "{tmp}/nothing.ipynb"], ["nothing.ipynb: expected an existing .ipynb notebook"]),
    (["run", "{tmp}/broken.ipynb"], ["broken.ipynb: not a notebook (invalid JSON"]),
    (["params", "{tmp}/broken.ipynb"], ["broken.ipynb: not a notebook"]),
    (["reproduce", "--only", "nope"], ["--only nope"]),
])
def test_driver_cases_handled_before(uga_like, tmp_path, results, monkeypatch, capsys, args, words):
    monkeypatch.chdir(ROOT)
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert main([a.format(nb=uga_like, tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err


def test_a_failing_cell_is_named_and_the_run_can_resume(uga_like, tmp_path, results, capsys):
    path = make_notebook(tmp_path / "nb" / "fails.ipynb", 'profile = "smoke"  # p', "x = 1", "y = 1 / 0")
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "fails.ipynb: cell 3 of 3" in err and "ZeroDivisionError" in err and ".partial/fails.ipynb" in err


@pytest.mark.parametrize("damage, words", [
    (lambda m: shutil.rmtree(m / "query"), [r"missing folder(s) ['query']"]),
    (lambda m: (m / "query" / "0001_c9s1_000001_00.jpg").write_bytes(b"x"), ["0001_c9s1_000001_00.jpg",
                                                                            "camera 9 is outside 1..6"]),
    (lambda m: (m / "query" / "0001_c2s9_000001_00.jpg").write_bytes(b"x"), ["sequence 9 is outside"]),
])
def test_dataset_cases_handled_before(copy_tree, damage, words):
    m = copy_tree(MARKET)
    damage(m)
    with pytest.raises(BadInputError) as e: load_dataset(m, "market1501")
    assert all(w in str(e.value) for w in words), str(e.value)


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(BadInputError, match="unknown dataset name 'market'"): load_dataset(tmp_path, "market")
    with pytest.raises(BadInputError, match="nowhere: dataset folder for market1501 does not exist"):
        load_dataset(tmp_path / "nowhere", "market1501")


def test_make_synth_bad_field(tmp_path, capsys):
    code = script("make_synth").main(["--preset", "tiny", "--out", str(tmp_path / "W"), "--set", "n_camz=4"])
    err = capsys.readouterr().err
    assert code == 1 and "n_camz" in err and "valid fields" in err and not (tmp_path / "W").exists()


def test_unreadable_image_is_named(copy_tree, capsys):
    m = copy_tree(MARKET)
    good = next((m / "query").glob("0001_*.jpg"))
    good.write_bytes(good.read_bytes()[:20])
    code = script("check_dataset").main([str(m), "--dataset", "market1501"])
    assert code == 1 and good.name in capsys.readouterr().err


def test_notebook_errors_are_not_tracebacks(tmp_path, results):
    two = make_notebook(tmp_path / "two.ipynb", "a = 1  # a", "b = 2")
    nb = nbformat.read(two, 4)
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, two)
    with pytest.raises(BadInputError, match="two.ipynb: 2 cells are tagged 'parameters'"): notebook_parameters(two)
    computed = make_notebook(tmp_path / "c.ipynb", "n = len('ab')  # computed")
    with pytest.raises(BadInputError, match="c.ipynb: parameters cell, line 1: n must be a literal"):
        notebook_parameters(computed)
    with pytest.raises(NotebookError): run_notebook(make_notebook(tmp_path / "f.ipynb", "a = 1  # a", "1 / 0"))


# ---------------------------------------------------------------- issue 26, cases 6 and 7: checked before a kernel
EXPERIMENTS = ROOT / "nbs" / "experiments"


@pytest.mark.parametrize("nb, settings, words", [
    ("calr", {"epochs": -1}, "settings of calr (smoke): epochs=-1 (expected an int at least 1)"),
    ("calr", {"epochs": 0, "lr": -1.0}, "epochs=0 (expected an int at least 1); lr=-1.0 (expected a float above 0)"),
    ("uga", {"lr": -1.0}, "settings of uga (smoke): lr=-1.0 (expected a float above 0)"),
    ("uga", {"height": 0}, "height=0 (expected an int at least 16)"),
    ("stgal", {"iters": 3}, "settings: unknown setting(s) iters; valid: arch, widths"),
    ("stgal", {"batch": "32"}, "settings['batch'] = '32': expected a int like 32"),
])
def test_settings_are_checked_before_a_kernel_starts(tmp_path, results, monkeypatch, nb, settings, words):
    """No kernel, no `.partial` set, no starting point trained (CALR trained the start before refusing, case 7)."""
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "data"))
    with pytest.raises(BadInputError) as e: run_notebook(EXPERIMENTS / f"{nb}.ipynb", profile="smoke", settings=settings)
    assert words in str(e.value)
    assert not results.exists() and not (tmp_path / "data").exists()


def test_every_setting_of_every_profile_has_a_range():
    from reid_nb.profiles import METHOD_SETTINGS, SETTING_RULES, _problem, valid_settings
    for method, profiles in METHOD_SETTINGS.items():
        for profile in profiles:
            values = valid_settings(method, profile, "market1501")
            assert set(values) <= set(SETTING_RULES), (method, set(values) - set(SETTING_RULES))
            assert not [k for k, v in values.items() if k != "weights" and _problem(v, SETTING_RULES[k])], method


def test_device_and_weight_files_are_checked_before_a_kernel_starts(tmp_path, results, monkeypatch):
    import torch
    from reid_nb.start import net_settings, new_backbone
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "data"))
    not_a_state_dict, resnet = tmp_path / "list.pt", tmp_path / "resnet50-stand-in.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    torch.save(new_backbone(net_settings("paper")).state_dict(), resnet)  # another architecture than smoke's
    cases = [({"device": "cuda:x"}, "device='cuda:x'"), ({"weights": str(not_a_state_dict)}, "holds a list, not a state dict"),
             ({"weights": str(resnet)}, "body weights missing")]
    if not torch.cuda.is_available(): cases.append(({"device": "cuda"}, "CUDA is not available on this machine"))
    for params, words in cases:
        with pytest.raises(BadInputError, match=words): run_notebook(EXPERIMENTS / "uga.ipynb", profile="smoke", **params)
    assert not results.exists() and not (tmp_path / "data").exists()


# ------------------------------------------------------------------ damaged caches are named, moved aside and rebuilt

def test_truncated_start_bounds_and_ceiling_caches_are_moved_aside_and_rebuilt(tmp_path, monkeypatch, capsys):
    """Issue 26 case 5: a cached start, floor/ceiling JSON or ceiling weights cut short each give one line naming the
    file, are kept as <name>.corrupt-1 and are made again; the rerun after that reuses them."""
    import json
    import torch
    from reid_nb import start
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path))
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    monkeypatch.setenv("REID_NB_LOG", "0")
    cut = lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    aside = lambda p: p.with_name(p.name + ".corrupt-1")

    budget = start.Budget(epochs=1, iters=2, batch=16, lr=1e-3)
    p = start.starting_point("smoke", budget=budget)
    cut(p)
    capsys.readouterr()
    assert start.starting_point("smoke", budget=budget) == p
    out = capsys.readouterr().out
    assert f"starting point cache {p} is unreadable (" in out and f"moved aside to {aside(p)}, rebuilding" in out
    assert aside(p).exists() and start.new_backbone(start.net_settings("smoke"), weights=p) is not None

    made = []
    def measure(ds, banks, net, budget, start_, path, device, seed, gpus=1):  # a stand-in: no training
        made.append(path)
        torch.save({"weights": start.new_backbone(net).state_dict(), "seconds": 0.0}, path.with_suffix(".pt"))
        path.write_text(json.dumps({"floor": {"mAP": 1.0}, "ceiling": {"mAP": 9.0}, "ceiling_images": 1}))
    monkeypatch.setattr(start, "_measure_bounds", measure)
    ds = open_dataset("synth", profile="smoke", seed=0)
    start.floor_and_ceiling(ds, {}, "smoke", start=p)
    bounds = made[0]
    cut(bounds)
    capsys.readouterr()
    assert start.floor_and_ceiling(ds, {}, "smoke", start=p)["ceiling"]["mAP"] == 9.0 and len(made) == 2
    out = capsys.readouterr().out
    assert f"floor/ceiling cache {bounds} is unreadable (JSONDecodeError" in out and str(aside(bounds)) in out

    ceiling = bounds.with_suffix(".pt")
    cut(ceiling)
    got, kept = start.cached_bounds(ds, "smoke", start=p)  # the comparison: never trains, says who will
    out = capsys.readouterr().out
    assert got["ceiling"]["mAP"] == 9.0 and kept is None and aside(ceiling).exists()
    assert f"ceiling weights cache {ceiling} is unreadable (" in out and "the next method run" in out
    start.floor_and_ceiling(ds, {}, "smoke", start=p)
    assert len(made) == 3 and start.cached_bounds(ds, "smoke", start=p)[1] is not None
    assert "unreadable" not in capsys.readouterr().out


def test_truncated_world_json_is_moved_beside_the_world_and_the_world_rebuilt(tmp_path, capsys):
    """The synthetic world is a cache too: its world.json cut short is named, kept beside the world, and rebuilt."""
    root = tmp_path / "w"
    before = open_dataset("synth", profile="smoke", seed=0, root=root)
    truth = root / "world" / "world.json"
    whole = truth.read_text()
    truth.write_text(whole[:100])
    capsys.readouterr()
    again = open_dataset("synth", profile="smoke", seed=0, root=root)
    out = capsys.readouterr().out
    assert f"synthetic world cache {truth} is unreadable (JSONDecodeError" in out
    assert f"moved aside to {tmp_path / 'w.world.json.corrupt-1'}, rebuilding the world" in out
    assert (tmp_path / "w.world.json.corrupt-1").read_text() == whole[:100] and truth.read_text() == whole
    assert [len(r) for r in again.splits().values()] == [len(r) for r in before.splits().values()]
    open_dataset("synth", profile="smoke", seed=0, root=root)
    assert capsys.readouterr().out.startswith(f"reusing synthetic world {root} (config hash ")
