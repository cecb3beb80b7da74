"""reid_nb.data: every parser on its fixture tree, both Market timelines, the Duke clock, validation, statistics and
the check script. References are hand-computed from the specs (METHODS.md §1, DATA.md §A) or the fixtures' ground
truth (tests/fixtures/make_fixtures.py, synth/world/images.csv)."""
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reid_nb.core import BadInputError
from reid_nb.data import (DUKE_FPS, MARKET1501_PUBLISHED, MARKET_SEQ_LEN, Records, compare_statistics,
                          concat_records, dataset_statistics, dataset_summary, duke_master_frame, duke_t_frames,
                          image_stem, load_dataset, market_concat_frames, parse_name, read_tracklets, split_statistics,
                          verify_images, virtual_camera)

ROOT = Path(__file__).resolve().parents[1]
MARKET = "market1501/Market-1501-v15.09.15"


def row_of(records: Records, name: str) -> dict:
    """The row of the image called `name` (exactly one)."""
    hits = [r for r in records.to_rows() if Path(r["path"]).name == name]
    assert len(hits) == 1, name
    return hits[0]


def names(records: Records) -> list[str]:
    return [Path(p).name for p in records.path]


# ---------------------------------------------------------------------------------------------------------- Records
def test_records_sorting_subset_rows():
    base = dict(pid=1, cam=0, seq=-1, frame=-1, bbox_idx=-1, vcam=0, t_frames=np.nan, t_sec=np.nan, tracklet=-1)
    rec = Records.from_rows([{**base, "path": p, "cam": c} for p, c in [("/b", 1), ("/a", 0), ("/c", 1)]])
    assert list(rec.path) == ["/a", "/b", "/c"] and rec.cam.tolist() == [0, 1, 1] and len(rec) == 3
    assert list(rec.subset(rec.cam == 1).path) == ["/b", "/c"]
    assert list(rec.subset([2, 0]).path) == ["/c", "/a"]
    assert rec.pid.dtype == np.int64 and rec.t_sec.dtype == np.float64
    assert len(concat_records(rec, rec.subset([0]))) == 4
    again = Records.from_rows(rec.to_rows())
    for k, v in rec.columns().items():
        assert np.array_equal(again.columns()[k], v, equal_nan=v.dtype.kind == "f"), k
    with pytest.raises(BadInputError, match="differ in length"):
        Records(**{**rec.columns(), "pid": [1]})


# ------------------------------------------------------------------------------------------------------------ names
def test_image_stem_and_parse_name():
    assert image_stem("1488_c1s6_023021_00.jpg.jpg") == "1488_c1s6_023021_00"
    assert image_stem("Thumbs.db") is None and image_stem(".DS_Store") is None
    assert parse_name("-1_c1s1_000401_03.jpg", "market1501", 6) == dict(pid=-1, cam=0, seq=1, frame=401, bbox_idx=3)
    assert parse_name("0000_000_01_0303morning_0015_0.jpg", "msmt17", 15)["cam"] == 0
    assert parse_name("0002_003_01_0303morning_0038_5_ex.jpg", "msmt17", 15) == dict(pid=2, cam=0, seq=-1, frame=-1,
                                                                                      bbox_idx=-1)
    for name, reason in [("0002_c1s1_451_03.jpg", "malformed name"), ("0002_c1s1_000451_03_x.jpg", "malformed name"),
                         ("-2_c1s1_000451_03.jpg", "malformed name"),
                         ("0002_c7s1_000451_03.jpg", "camera out of range"),
                         ("0002_c0s1_000451_03.jpg", "camera out of range")]:
        with pytest.raises(BadInputError, match=name) as e:
            parse_name(name, "market1501", 6)
        assert e.value.reason == reason


# ------------------------------------------------------------------------------------------------------------ Market
def test_market_fixture(fixtures):
    ds = load_dataset(fixtures / "market1501", "market1501")
    assert ds.root == fixtures / MARKET and ds.n_cams == 6 and ds.fps == 25 and ds.has_clock
    assert names(ds.train) == ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0002_c6s4_030001_02.jpg",
                               "0007_c1s6_023021_01.jpg", "0007_c4s2_001201_01.jpg", "0007_c4s5_000051_01.jpg"]
    assert names(ds.query) == ["0001_c1s1_001051_00.jpg", "0001_c2s1_000826_00.jpg", "1488_c1s6_023021_00.jpg.jpg"]
    assert names(ds.gallery) == ["0000_c1s1_000151_01.jpg", "0001_c1s1_001101_01.jpg", "0001_c3s2_000626_02.jpg",
                                 "0001_c5s3_103401_01.jpg", "1488_c2s3_012001_01.jpg", "1488_c6s1_000026_01.jpg"]
    assert ds.skip_counts() == {"train": {"not an image file": 1},
                                "query": {"junk (pid -1)": 1, "not an image file": 1},
                                "gallery": {"junk (pid -1)": 2, "not an image file": 1}}
    assert sorted(ds.skipped["gallery"]["junk (pid -1)"]) == ["bounding_box_test/-1_c1s1_000401_03.jpg",
                                                              "bounding_box_test/-1_c4s6_022316_11.jpg.jpg"]
    r = row_of(ds.train, "0002_c1s1_000451_03.jpg")
    assert r == dict(path=str(fixtures / MARKET / "bounding_box_train" / "0002_c1s1_000451_03.jpg"), pid=2, cam=0,
                     seq=1, frame=451, bbox_idx=3, vcam=0, t_frames=451.0, t_sec=451 / 25, tracklet=-1)
    assert row_of(ds.gallery, "0000_c1s1_000151_01.jpg")["pid"] == 0  # distractor kept
    q = row_of(ds.query, "1488_c1s6_023021_00.jpg.jpg")
    assert (q["pid"], q["cam"], q["seq"], q["frame"], q["bbox_idx"], q["vcam"]) == (1488, 0, 6, 23021, 0, 5)
    assert (ds.query.bbox_idx == 0).all() and (ds.train.tracklet == -1).all()


def test_market_parent_or_inner_folder(fixtures):
    a, b = load_dataset(fixtures / "market1501", "market1501"), load_dataset(fixtures / MARKET, "market1501")
    assert list(a.gallery.path) == list(b.gallery.path) and a.root == b.root


def test_market_virtual_cameras_match_stgal_table(fixtures):
    # STGAL ccm.py get_market_cam_seq_dict: seqs = [6, 3, 3, 6, 3, 4], numbered camera by camera from 0
    table, k = {}, 0
    for cam, n in enumerate([6, 3, 3, 6, 3, 4]):
        for seq in range(1, n + 1): table[(cam, seq)] = k; k += 1
    cams, seqs = zip(*table)
    assert virtual_camera(list(cams), list(seqs), [6, 3, 3, 6, 3, 4]).tolist() == list(table.values())
    ds = load_dataset(fixtures / "market1501", "market1501", market_time_mode="virtual")
    assert ds.n_vcams == 25 and ds.time_mode == "virtual"
    for rec in ds.splits().values():
        assert rec.vcam.tolist() == [table[(c, s)] for c, s in zip(rec.cam, rec.seq)]
        assert np.array_equal(rec.t_frames, rec.frame) and np.allclose(rec.t_sec, rec.frame / 25)


# METHODS.md §1.5, the cumulative offsets as printed there (typed by hand, not computed from MARKET_SEQ_LEN)
METHODS_OFFSETS = {1: [0, 72681, 147227, 222108, 296769, 371660], 2: [0, 163691, 328368], 3: [0, 161708, 323477],
                   4: [0, 72107, 144480, 219290, 293831, 368741], 5: [0, 161095, 322819],
                   6: [0, 87551, 218819, 314636]}
METHODS_TOTALS = {1: 426006, 2: 426470, 3: 427946, 4: 419357, 5: 426306, 6: 345588}


def test_market_concat_offsets_match_methods_table(fixtures):
    for cam, offsets in METHODS_OFFSETS.items():
        got = market_concat_frames([cam - 1] * len(offsets), list(range(1, len(offsets) + 1)), [0] * len(offsets))
        assert got.tolist() == offsets, cam
        assert sum(MARKET_SEQ_LEN[cam - 1]) == METHODS_TOTALS[cam]
    ds = load_dataset(fixtures / "market1501", "market1501", market_time_mode="concat")
    assert ds.time_mode == "concat" and ds.n_vcams == 6
    expected = {"0002_c6s4_030001_02.jpg": 314636 + 30001, "0007_c1s6_023021_01.jpg": 371660 + 23021,
                "0007_c4s5_000051_01.jpg": 293831 + 51, "0007_c4s2_001201_01.jpg": 72107 + 1201,
                "0002_c2s1_000301_01.jpg": 301}
    for name, t in expected.items():
        r = row_of(ds.train, name)
        assert r["t_frames"] == t and r["t_sec"] == pytest.approx(t / 25) and r["vcam"] == r["cam"]
    assert row_of(ds.gallery, "0001_c5s3_103401_01.jpg")["t_frames"] == 322819 + 103401


# -------------------------------------------------------------------------------------------------------------- Duke
DUKE_START = {1: 5543, 2: 3607, 3: 27244, 4: 31182, 5: 1, 6: 22402, 7: 18968, 8: 46766}  # DukeMTMC StartTimes


def test_duke_sync(fixtures):
    assert duke_master_frame(7, 2935) == 49700 and duke_t_frames(7, 2935) == 1  # c8 f0002935 -> master 49,700
    ds = load_dataset(fixtures / "dukemtmc", "dukemtmc")
    assert ds.fps == DUKE_FPS == 59.940059 and ds.time_mode == "synced" and ds.n_cams == 8
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 2, 3)
    for rec in ds.splits().values():
        for r in rec.to_rows():
            cam, frame = int(Path(r["path"]).name[6]), int(Path(r["path"]).stem.split("_f")[1])
            assert r["cam"] == cam - 1 and r["frame"] == frame and r["vcam"] == cam - 1
            assert r["t_frames"] == frame - (49700 - DUKE_START[cam])  # STGAL create_DukeReID_database.py
            assert r["t_sec"] == pytest.approx(r["t_frames"] / 59.940059) and r["seq"] == r["bbox_idx"] == -1
    assert row_of(ds.query, "0005_c2_f0046985.jpg")["t_frames"] == 46985 + 3607 - 49700
    assert row_of(ds.train, "0001_c2_f0046182.jpg")["pid"] == 1


# ------------------------------------------------------------------------------------------------- MSMT17 and VeRi
@pytest.mark.parametrize("version,train_dir,test_dir", [(1, "train", "test"), (2, "mask_train_v2", "mask_test_v2")])
def test_msmt17(fixtures, version, train_dir, test_dir):
    ds = load_dataset(fixtures / f"msmt17_v{version}", "msmt17")
    assert ds.root.name == f"MSMT17_V{version}" and ds.n_cams == 15 and not ds.has_clock and ds.fps is None
    assert names(ds.train) == ["0000_000_01_0303morning_0015_0.jpg", "0000_003_05_0303noon_0210_1.jpg",
                               "0001_011_01_0303morning_0036_1.jpg", "0001_012_07_0303afternoon_0583_2_ex.jpg"]
    assert all(Path(p).parts[-3] == train_dir for p in ds.train.path)  # list_train + list_val under train/
    assert all(Path(p).parts[-3] == test_dir for p in concat_records(ds.query, ds.gallery).path)
    assert ds.train.pid.tolist() == [1, 1, 2, 2] and ds.train.cam.tolist() == [0, 4, 0, 6]  # label + 1, camera - 1
    assert names(ds.query) == ["0000_000_02_0113morning_0012_0.jpg"] and ds.query.cam.tolist() == [1]
    assert ds.gallery.pid.tolist() == [1, 2] and ds.gallery.cam.tolist() == [9, 1]
    assert "0001_013_03_0303noon_0990_0_ex.jpg" not in names(ds.train)  # on disk but in no list
    assert np.isnan(ds.train.t_frames).all() and (ds.train.frame == -1).all() and ds.skip_counts()["train"] == {}
    with pytest.raises(BadInputError, match="STGAL needs time stamps.*msmt17.*no frame number"):
        ds.require_clock("STGAL")


def test_veri(fixtures):
    ds = load_dataset(fixtures / "veri", "veri")
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (3, 1, 2) and ds.n_cams == 20
    assert ds.train.cam.tolist() == [0, 1, 1] and ds.train.pid.tolist() == [1, 1, 2]
    assert not ds.has_clock and np.isnan(ds.gallery.t_sec).all()
    with pytest.raises(BadInputError, match="STGAL needs time stamps.*veri"):
        ds.require_clock("STGAL")
    load_dataset(fixtures / "dukemtmc", "dukemtmc").require_clock("STGAL")  # a clock: no error


# ------------------------------------------------------------------------------------------------------------- synth
def synth_truth(root: Path) -> tuple[dict, list]:
    with open(root / "world" / "images.csv") as f:
        truth = {r["file"]: r for r in csv.DictReader(f)}
    return truth, json.loads((root / "world" / "world.json").read_text())["clock_offset_frames"]


def test_synth_concat_against_ground_truth(fixtures):
    ds = load_dataset(fixtures / "synth", "synth", market_time_mode="concat")
    truth, offsets = synth_truth(fixtures / "synth")
    assert ds.fps == 25 and ds.n_cams == 3 and ds.n_vcams == 3
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (6, 2, 3)
    assert ds.skip_counts()["gallery"] == {"junk (pid -1)": 1}
    seen = 0
    for split, rec in ds.splits().items():
        for r in rec.to_rows():
            t = truth[str(Path(r["path"]).relative_to(ds.root))]
            assert (t["split"], int(t["pid"]), int(t["cam"]), int(t["seq"]), int(t["frame"])) == (
                split, r["pid"], r["cam"], r["seq"], r["frame"])
            assert r["t_frames"] == int(t["global_frame"]) + offsets[r["cam"]] + 1
            assert r["t_sec"] == pytest.approx(r["t_frames"] / 25) and r["tracklet"] == int(t["visit"])
            seen += 1
    assert seen == sum(1 for t in truth.values() if t["pid"] != "-1")


def test_synth_virtual(fixtures):
    ds = load_dataset(fixtures / "synth", "synth")
    assert ds.time_mode == "virtual"
    rows = [r for rec in ds.splits().values() for r in rec.to_rows()]
    n_seq = [max(r["seq"] for r in rows if r["cam"] == c) for c in range(3)]  # [3, 2, 5] on the fixture
    first = [sum(n_seq[:c]) for c in range(3)]
    assert ds.n_vcams == sum(n_seq) == 10
    assert all(r["vcam"] == first[r["cam"]] + r["seq"] - 1 and r["t_frames"] == r["frame"] for r in rows)
    d = row_of(ds.gallery, "0000_c2s1_000951_01.jpg")
    assert d["pid"] == 0 and d["tracklet"] == -1  # distractor kept, no tracklet


def test_synth_from_generator(tmp_path):
    """If the world generator is present: the loader inverts its clock and reads its tracklets."""
    world = pytest.importorskip("reid_nb.world")
    root = Path(world.make_world(tmp_path / "w", preset="tiny", seed=0, workers=1))
    ds = load_dataset(root, "synth", market_time_mode="concat")
    truth, offsets = synth_truth(root)
    for rec in ds.splits().values():
        for r in rec.to_rows():
            t = truth[str(Path(r["path"]).relative_to(root))]
            assert r["t_frames"] == int(t["global_frame"]) + offsets[r["cam"]] + 1
            assert (r["pid"], r["cam"]) == (int(t["pid"]), int(t["cam"]))
    tracks = read_tracklets(root)
    assert tracks and all(ds.train.tracklet[i] == tracks[str(Path(p).relative_to(root))]
                          for i, p in enumerate(ds.train.path) if str(Path(p).relative_to(root)) in tracks)


# -------------------------------------------------------------------------------------------------------- bad input
def test_unknown_name_and_missing_root(fixtures, tmp_path):
    known = "known: market1501, dukemtmc, msmt17, veri, synth"
    with pytest.raises(BadInputError, match=f"unknown dataset name 'market'; {known}"):
        load_dataset(fixtures, "market")
    with pytest.raises(BadInputError, match="does not exist"):
        load_dataset(tmp_path / "nowhere", "market1501")
    with pytest.raises(BadInputError, match="market_time_mode='both'"):
        load_dataset(fixtures / "market1501", "market1501", market_time_mode="both")
    with pytest.raises(BadInputError, match="not to dukemtmc"):
        load_dataset(fixtures / "dukemtmc", "dukemtmc", market_time_mode="concat")


def test_missing_split_folder(copy_tree):
    m = copy_tree(MARKET)
    shutil.rmtree(m / "query")
    with pytest.raises(BadInputError, match=r"missing folder\(s\) \['query'\]"):
        load_dataset(m, "market1501")


@pytest.mark.parametrize("name,reason", [("0001_c1s1_0451_01.jpg", "malformed name"),
                                         ("0001_c1s1_000451_01 (copy).jpg", "malformed name"),
                                         ("0001_c9s1_000451_01.jpg", "camera out of range"),
                                         ("0001_c2s4_000451_01.jpg", "sequence out of range")])
def test_bad_market_names_strict_and_lenient(copy_tree, name, reason):
    m = copy_tree(MARKET)
    (m / "bounding_box_test" / name).write_bytes((m / "query" / "0001_c1s1_001051_00.jpg").read_bytes())
    with pytest.raises(BadInputError, match=name.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(m, "market1501")
    ds = load_dataset(m, "market1501", strict=False)
    assert ds.skipped["gallery"][reason] == [f"bounding_box_test/{name}"] and len(ds.gallery) == 6


def test_empty_split(copy_tree):
    m = copy_tree(MARKET)
    for p in (m / "query").glob("*.jpg*"): p.unlink()
    (m / "query" / "-1_c1s1_000001_00.jpg").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"query: no usable images for the query split.*junk \(pid -1\)': 1"):
        load_dataset(m, "market1501")


def test_single_camera(copy_tree):
    m = copy_tree(MARKET)
    for p in m.rglob("*.jpg*"):
        if "_c1s" not in p.name: p.unlink()
    with pytest.raises(BadInputError, match="every image comes from camera 1"):
        load_dataset(m, "market1501")


def test_msmt_bad_lists(copy_tree):
    m = copy_tree("msmt17_v1/MSMT17_V1")
    good = (m / "list_val.txt").read_text()
    (m / "list_val.txt").write_text(good + "0001/0001_020_03_0303noon_0001_0.jpg\n")
    with pytest.raises(BadInputError, match=r"list_val.txt, line 3: expected '<relative path> <label>'"):
        load_dataset(m, "msmt17")
    ds = load_dataset(m, "msmt17", strict=False)
    assert ds.skipped["train"] == {"list line does not parse": ["list_val.txt:3"]} and len(ds.train) == 4
    (m / "list_val.txt").write_text(good + "0001/0001_099_03_0303noon_0001_0.jpg 1\n")
    with pytest.raises(BadInputError, match=r"list_val.txt:3: .*0001_099_03_0303noon_0001_0.jpg does not exist"):
        load_dataset(m, "msmt17")
    assert load_dataset(m, "msmt17", strict=False).skip_counts()["train"] == {"listed file missing": 1}
    (m / "list_val.txt").write_text(good + good.splitlines()[0] + "\n")
    with pytest.raises(BadInputError, match="listed twice"):
        load_dataset(m, "msmt17")
    (m / "list_query.txt").unlink()
    with pytest.raises(BadInputError, match=r"missing list file\(s\) \['list_query.txt'\]"):
        load_dataset(m, "msmt17")


def test_synth_bad_world(copy_tree):
    s = copy_tree("synth")
    world = json.loads((s / "world" / "world.json").read_text())
    (s / "world" / "world.json").write_text(json.dumps({**world, "seq_len": [1000, 1500]}))
    with pytest.raises(BadInputError, match=r"world.json: field 'seq_len' must hold n_cams=3"):
        load_dataset(s, "synth")
    (s / "world" / "world.json").write_text(json.dumps({k: v for k, v in world.items() if k != "fps"}))
    with pytest.raises(BadInputError, match=r"world.json: field 'fps' must be a int"):
        load_dataset(s, "synth")
    (s / "world" / "world.json").unlink()
    with pytest.raises(BadInputError, match=r"world/world.json: missing"):
        load_dataset(s, "synth")


def test_synth_frame_outside_clock(copy_tree):
    s = copy_tree("synth")
    (s / "query" / "0003_c3s1_000801_00.jpg").write_bytes(b"x")  # camera 3 has 800 frames per sequence
    with pytest.raises(BadInputError, match=r"0003_c3s1_000801_00.jpg: .*frame 1..800"):
        load_dataset(s, "synth")


@pytest.mark.parametrize("line,message", [("query/0003_c1s3_000011_00.jpg,x", "tracklet 'x' is not an integer"),
                                          ("query/nothere.jpg,9", "'query/nothere.jpg' does not exist"),
                                          ("query/0003_c1s3_000011_00.jpg,6", "listed twice")])
def test_synth_bad_tracklets(copy_tree, line, message):
    s = copy_tree("synth")
    with open(s / "tracklets.csv", "a") as f: f.write(line + "\n")
    with pytest.raises(BadInputError, match=rf"tracklets.csv, line 12: .*{message}"):
        load_dataset(s, "synth")


# ---------------------------------------------------------------------------------------------------- verify_images
def test_verify_images(fixtures, tmp_path):
    ds = load_dataset(fixtures / "market1501", "market1501")
    assert verify_images(concat_records(ds.train, ds.query, ds.gallery)) == []
    data = Path(ds.train.path[0]).read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not a jpeg")
    rows = ds.train.to_rows()[:1] + [{**ds.train.to_rows()[0], "path": str(tmp_path / n)}
                                     for n in ("empty.jpg", "cut.jpg", "text.jpg", "gone.jpg")]
    rec = Records.from_rows(rows)
    with pytest.raises(BadInputError, match="4 unreadable image.*cut.jpg: cannot decode"):
        verify_images(rec)
    bad = dict((Path(p).name, why) for p, why in verify_images(rec, strict=False))
    assert bad.keys() == {"empty.jpg", "cut.jpg", "text.jpg", "gone.jpg"}
    assert bad["empty.jpg"] == "empty file (0 bytes)" and bad["gone.jpg"] == "missing"


# ------------------------------------------------------------------------------------------------------- statistics
def brute_statistics(pids, cams) -> dict:
    """Per-identity counts by plain Python loops (pid > 0 only)."""
    per_id, pairs = {}, {}
    for p, c in zip(pids, cams):
        if p > 0:
            per_id[p] = per_id.get(p, 0) + 1; pairs[(p, c)] = pairs.get((p, c), 0) + 1
    cams_per_id = [len({c for (q, c) in pairs if q == p}) for p in per_id]
    return {"identities": len(per_id), "imgs_per_id_mean": sum(per_id.values()) / len(per_id),
            "imgs_per_id_max": max(per_id.values()), "cams_per_id_mean": sum(cams_per_id) / len(cams_per_id),
            "imgs_per_id_cam_mean": sum(pairs.values()) / len(pairs),
            "imgs_per_id_cam_median": float(np.median(list(pairs.values())))}


def test_split_statistics_against_brute_force():
    rng = np.random.default_rng(0)
    n = 400
    pids, cams = rng.integers(-1, 40, n), rng.integers(0, 6, n)
    rows = [dict(path=f"/x/{i:04d}.jpg", pid=p, cam=c, seq=-1, frame=-1, bbox_idx=-1, vcam=c, t_frames=float(i),
                 t_sec=i / 25, tracklet=-1) for i, (p, c) in enumerate(zip(pids, cams))]
    st = split_statistics(Records.from_rows(rows), 6, skipped=7)
    ref = brute_statistics(pids, cams)
    for k, v in ref.items(): assert st[k] == pytest.approx(v), k
    assert st["images"] == n and st["distractor_images"] == (pids == 0).sum() and st["skipped"] == 7
    assert [st[f"images_c{c}"] for c in range(1, 7)] == np.bincount(cams, minlength=6).tolist()
    assert (st["t_sec_min"], st["t_sec_max"]) == (0.0, (n - 1) / 25)


def test_dataset_statistics_market_fixture(fixtures):
    st = dataset_statistics(load_dataset(fixtures / "market1501", "market1501"))
    assert list(st) == ["train", "query", "gallery", "query+gallery"]
    tr = st["train"]  # 0002: c1 c2 c6 (one image each); 0007: c1, c4 twice
    assert (tr["images"], tr["identities"], tr["cameras"], tr["skipped"]) == (6, 2, 4, 1)
    assert (tr["cams_per_id_mean"], tr["imgs_per_id_cam_mean"], tr["imgs_per_id_cam_p90"]) == (2.5, 1.2, 1.6)
    assert (tr["images_c1"], tr["images_c4"], tr["images_c5"]) == (2, 2, 0)
    g = st["gallery"]
    assert (g["images"], g["identities"], g["distractor_images"], g["skipped"]) == (6, 2, 1, 3)
    qg = st["query+gallery"]  # 0001: q c1 c2, g c1 c3 c5; 1488: q c1, g c2 c6
    assert (qg["images"], qg["identities"], qg["imgs_per_id_mean"], qg["cams_per_id_mean"]) == (9, 2, 4.0, 3.5)
    assert qg["skipped"] == 5


def test_market_published_numbers_are_consistent():
    p = MARKET1501_PUBLISHED
    assert sum(p["train"][f"images_c{c}"] for c in range(1, 7)) == p["train"]["images"] == 12936
    assert sum(p["query"][f"images_c{c}"] for c in range(1, 7)) == p["query"]["images"] == 3368
    assert p["gallery"]["images"] + p["gallery"]["skipped"] == 19732  # bounding_box_test on disk
    assert p["query+gallery"]["images"] == p["query"]["images"] + p["gallery"]["images"]
    assert round(p["query"]["images"] / p["query"]["identities"], 2) == p["query"]["imgs_per_id_mean"]
    assert p["train"]["cams_per_id_mean"] == 4.34 and p["train"]["imgs_per_id_cam_mean"] == 3.97
    assert all(set(v) == set(p["train"]) for v in p.values())


def test_compare_statistics(fixtures):
    rows = compare_statistics(dataset_statistics(load_dataset(fixtures / "market1501", "market1501")))
    by = {(r["split"], r["statistic"]): r for r in rows}
    assert by[("train", "images")] == {"split": "train", "statistic": "images", "ours": 6, "published": 12936,
                                       "difference": 6 - 12936}
    g = by[("gallery", "imgs_per_id_mean")]
    assert g["published"] is None and g["difference"] is None
    assert by[("train", "t_sec_min")]["difference"] is None  # no published time range


def test_dataset_summary_is_json(fixtures):
    s = dataset_summary(load_dataset(fixtures / "msmt17_v1", "msmt17"))
    text = json.dumps(s, allow_nan=False)  # no NaN anywhere
    assert json.loads(text)["splits"]["train"]["t_sec_range"] is None and s["has_clock"] is False


# ------------------------------------------------------------------------------------------------------ check script
def check(*args) -> subprocess.CompletedProcess:
    """Run the script as a user would."""
    return subprocess.run([sys.executable, str(ROOT / "data_scripts" / "check_dataset.py"), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "REID_NB_PROGRESS": "0"}, timeout=120)


@pytest.fixture
def check_main(capsys, monkeypatch):
    """The script's main() in this process (fast): args -> (exit code, stdout, stderr)."""
    monkeypatch.setenv("REID_NB_PROGRESS", "0")
    spec = importlib.util.spec_from_file_location("check_dataset", ROOT / "data_scripts" / "check_dataset.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    def run(*args):
        code = module.main([str(a) for a in args]); out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_check_script_exit_codes(fixtures, copy_tree):
    ok = check(fixtures / "market1501", "--dataset", "market1501")
    assert ok.returncode == 0, ok.stderr
    s = json.loads(ok.stdout)
    assert s["dataset"] == "market1501" and s["splits"]["query"]["images"] == 3 and s["unreadable_images"] == []
    m = copy_tree(MARKET)
    (m / "query" / "0001_c9s1_000001_00.jpg").write_bytes(b"")
    bad = check(m, "--dataset", "market1501")
    assert bad.returncode == 1 and "0001_c9s1_000001_00.jpg: camera 9 is outside 1..6" in bad.stderr
    assert bad.stdout == ""


def test_check_script_cases(fixtures, copy_tree, check_main):
    code, out, _ = check_main(fixtures / "market1501", "--dataset", "market1501")
    s = json.loads(out)
    assert code == 0 and s["splits"]["gallery"]["skipped"]["junk (pid -1)"]["count"] == 2
    assert s["splits"]["train"]["t_sec_range"] == [51 / 25, 30001 / 25] and s["n_vcams"] == 25
    code, out, _ = check_main(fixtures / "msmt17_v2", "--dataset", "msmt17")
    assert code == 0 and json.loads(out)["splits"]["train"]["images"] == 4 and json.loads(out)["fps"] is None
    m = copy_tree(MARKET)
    (m / "query" / "0001_c9s1_000001_00.jpg").write_bytes(b"")
    code, out, _ = check_main(m, "--dataset", "market1501", "--lenient")
    assert code == 0 and json.loads(out)["splits"]["query"]["skipped"]["camera out of range"]["count"] == 1
    (m / "query" / "0001_c3s1_000001_00.jpg").write_bytes(b"")  # a good name but an empty file
    code, out, err = check_main(m, "--dataset", "market1501", "--lenient")
    assert code == 1 and "0001_c3s1_000001_00.jpg: empty file" in err
    assert json.loads(out)["unreadable_images"][0]["problem"] == "empty file (0 bytes)"
    assert check_main(m, "--dataset", "market1501", "--lenient", "--no-verify")[0] == 0
    code, out, err = check_main(m, "--dataset", "dukemtmc")
    assert code == 1 and out == "" and "0002_c1s1_000451_03.jpg: expected a dukemtmc name" in err
    with pytest.raises(SystemExit) as e:
        check_main(m, "--dataset", "nope")
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------- the registry: open_dataset
def test_open_dataset_opens_a_real_layout_through_its_registered_opener(fixtures):
    from reid_nb.data import open_dataset
    ds = open_dataset("market1501", "paper", root=fixtures / "market1501", market_time_mode="concat")
    ref = load_dataset(fixtures / "market1501", "market1501", market_time_mode="concat")
    assert ds.name == "market1501" and ds.time_mode == "concat"
    assert all(np.array_equal(getattr(ds, s).path, getattr(ref, s).path) for s in ("train", "query", "gallery"))


def test_open_dataset_unknown_name_lists_every_registered_one():
    from reid_nb.data import dataset_names, open_dataset
    assert dataset_names() == ["market1501", "dukemtmc", "msmt17", "veri", "synth"]
    with pytest.raises(BadInputError, match="dataset 'cuhk03': expected one of market1501, dukemtmc, msmt17, veri, "
                                            "synth$"):
        open_dataset("cuhk03")
    with pytest.raises(BadInputError, match=r"profile='fast': expected one of \('smoke', 'default', 'paper'\)"):
        open_dataset("cuhk03", "fast")  # the profile is checked first, as before


def test_register_dataset_hands_the_opener_every_argument(fixtures, monkeypatch):
    from reid_nb import data
    calls = []
    def opener(name, profile, seed, root, world, **options):
        calls.append((name, profile, seed, root, world, options))
        return load_dataset(fixtures / "dukemtmc", "dukemtmc")
    monkeypatch.setitem(data.DATASET_OPENERS, "duke-copy", None)  # removed again after the test
    assert data.register_dataset("duke-copy", opener) is opener
    assert data.open_dataset("duke-copy", "smoke", 3, "/r", "w", strict=False).name == "dukemtmc"
    assert calls == [("duke-copy", "smoke", 3, "/r", "w", {"strict": False})]
    assert "duke-copy" in data.dataset_names()


def test_data_imports_the_registering_modules_only_when_a_name_is_looked_up():
    """`data` sits above the synthetic world's modules: importing it loads none of them; the first lookup does."""
    code = ("import sys, reid_nb.data as d; before = 'reid_nb.world' in sys.modules or 'reid_nb.synth' in sys.modules; "
            "names = d.dataset_names(); print(before, 'reid_nb.world' in sys.modules, 'synth' in names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
