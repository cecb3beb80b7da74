"""`reid-nb reproduce --worlds`: the whole smoke reproduce on two worlds, then the claims map over them (issue 23)."""
import csv
import re

import pytest

from reid_nb import sets as rs
from reid_nb.cli import main
from reid_nb.core import project_root
from reid_nb.runner import run_notebook

CLAIMS = project_root() / "nbs" / "experiments" / "claims.ipynb"
EFFECT = "ours: mAP A - B [95 % interval]"
ONE_SEED = re.compile(r"^-?\d+\.\d \(1 seed\)$")  # reid_nb.report.mean_sd of a single seed


def read(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def world_param(w):
    """The `world` parameter a world's runs get: '' for the smoke profile's own preset (as a plain reproduce)."""
    return "" if w == "tiny" else w


def test_the_profiles_own_world_by_name_is_the_plain_reproduces_world():
    """`--worlds default duke-like ...` plans the very runs `make reproduce` made on the default world, so the claims
    map reuses their sets instead of training that world again; any other world keeps its name."""
    uga = project_root() / "nbs" / "experiments" / "uga.ipynb"
    runs = lambda profile, world: rs._runs(uga, {"profile": profile, "dataset": "synth", "world": world}, (0, 1), {})
    assert runs("default", "default") == runs("default", "") and runs("default", "")[0]["world"] == ""
    assert runs("default", "duke-like")[0]["world"] == "duke-like"
    assert runs("smoke", "default")[0]["world"] == "default"  # smoke's own world is `tiny`


def test_world_and_worlds_are_refused_together(capsys):
    assert main(["reproduce", "--profile", "smoke", "--world", "tiny", "--worlds", "tiny", "market-mini"]) == 2
    assert ("--world tiny and --worlds: give one world with --world or several with --worlds, not both"
            in capsys.readouterr().err)


@pytest.fixture(scope="module")
def two_worlds(tmp_path_factory):
    """`reproduce --worlds` on smoke (extras and CALR's ablation off) over the `tiny` preset and a second tiny world
    folder (another seed), in fresh results and data folders; then the map alone with the second world's sets
    missing. The environment stays set while the module's tests run."""
    root = tmp_path_factory.mktemp("claims_map")
    env = {"REID_NB_RESULTS": root / "results", "REID_NB_DATA": root / "data", "REID_NB_PROGRESS": "0",
           "REID_NB_LOG": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items(): mp.setenv(k, str(v))
        from reid_nb.world import make_world
        second = str(make_world(root / "worlds" / "tiny-s1", preset="tiny", seed=1, workers=1))
        worlds = ["tiny", second]
        rc = main(["reproduce", "--profile", "smoke", "--worlds", *worlds, "-p", "extras", "false",
                   "-p", "calr:ablation", "false"])
        res = root / "results"
        made = rs.find_result_set("claims", res, worlds=worlds)
        named = {"tiny": rs._read_manifest(made)["parameters"]["sets"]["tiny"]}  # the second world's: none
        missing = run_notebook(CLAIMS, profile="smoke", world="tiny", worlds=worlds, sets=named).parent
        yield {"rc": rc, "res": res, "worlds": worlds, "map": made, "missing": missing}


@pytest.mark.slow
def test_each_world_runs_its_sets(two_worlds):
    res = two_worlds["res"]
    for w in two_worlds["worlds"]:
        for m in ("datasets", "uga", "calr", "compare"):
            assert rs.find_result_set(m, res, profile="smoke", world=world_param(w)), (m, w)
        assert rs.find_result_set("claims", res, profile="smoke", world=world_param(w), worlds=[]), w


@pytest.mark.slow
def test_the_map_names_both_worlds_with_each_worlds_own_verdicts(two_worlds):
    tiny, second = two_worlds["worlds"]
    rows = read(two_worlds["map"] / "claims" / "map-smoke.csv")
    assert list(rows[0]) == ["method", "claim", tiny, second] and len(rows) >= 10
    for w in (tiny, second):
        own_set = rs.find_result_set("claims", two_worlds["res"], profile="smoke", world=world_param(w), worlds=[])
        own = {r["claim"]: r for r in read(next((own_set / "claims").glob("claims-*.csv")))}
        assert set(own) == {r["claim"] for r in rows}
        for r in rows:
            mine = own[r["claim"]]
            if mine["verdict"].startswith("n/a"): assert r[w].startswith("n/a"), (w, r)
            else: assert r[w] == f"{mine[EFFECT]} {mine['verdict']} (1 seed)", (w, r)
    assert any(not r[w].startswith("n/a") for r in rows for w in (tiny, second))  # something was measured


@pytest.mark.slow
def test_the_map_rows_equal_each_worlds_compare_table(two_worlds):
    """Floor, methods and ceiling as `compare` shows them on that world (floor and ceiling from the cached bounds)."""
    rows = {r["world"]: r for r in read(two_worlds["map"] / "claims" / "map_rows-smoke.csv")}
    assert list(rows) == two_worlds["worlds"]
    for w, r in rows.items():
        compared = rs.find_result_set("compare", two_worlds["res"], profile="smoke", world=world_param(w))
        main = {x["method"]: x for x in read(next((compared / "compare").glob("main-*.csv")))}
        for k in ("floor", "UGA", "CALR", "ceiling"):
            assert ONE_SEED.match(r[f"{k} mAP"]) and r[f"{k} mAP"] == main[k]["mAP"], (w, k, r)
        for k in ("UGA", "CALR"): assert r[f"{k} gap closed %"] == main[k]["gap closed %"], (w, k, r)


@pytest.mark.slow
def test_a_missing_world_set_gives_na_cells_with_the_command(two_worlds):
    tiny, second = two_worlds["worlds"]
    rows = read(two_worlds["missing"] / "claims" / "map-smoke.csv")
    uga = next(r for r in rows if r["method"] == "UGA")
    assert uga[second] == f"n/a: no uga result set for seed 0 (reid-nb run uga --profile smoke -p world {second})"
    assert uga[tiny] == next(r for r in read(two_worlds["map"] / "claims" / "map-smoke.csv")
                             if r["method"] == "UGA")[tiny]
    frame = {r["world"]: r for r in read(two_worlds["missing"] / "claims" / "map_rows-smoke.csv")}
    assert frame[second]["UGA mAP"].startswith("n/a: no uga result set for seed 0")

