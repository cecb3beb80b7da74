"""reid_nb.distributed: every method's training stage in 2 `gloo` processes under torchrun against the same call in
one process (same global batch, same seed), resume across process counts, and the driver's errors.

Tolerances (measured, then stated): pseudo labels and cluster counts are equal; losses agree to a relative 1e-4;
weights to 1e-5 after SGD (UGA, STGAL) and 2e-3 after Adam (CALR, the ceiling), whose update is lr x sign for
gradients near zero, so summation-order rounding there moves a weight by up to lr per step."""
import numpy as np
import pytest
import torch

import reid_nb.uga as uga
from reid_nb.calr import inter_camera_stage, intra_camera_stage
from reid_nb.core import CHECK_ENV, BadInputError
from reid_nb.distributed import run_stage
from reid_nb.models import build_backbone
from reid_nb.sampling import ImageBank
from reid_nb.start import Budget, net_settings, train_supervised
from reid_nb.sstt import assume_tracklets, cooccurrence_groups
from reid_nb.stgal import STGALData, stage1_batches, stgal_config, train_triplet
from test_calr import _toy, _toy_cfg
from test_uga import _fresh, _tiny_data

UGA_CFG = uga.UGAConfig(ids_per_cam=2, num_instances=2, stage1_epochs=2, stage2_epochs=2, iters_per_epoch=2, k=1, pad=1)


def _max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a) if a else 0.0


def _losses_close(h1: list[dict], h2: list[dict], keys=("loss",)):
    assert len(h1) == len(h2)
    for a, b in zip(h1, h2):
        assert a.keys() == b.keys()
        for k in set(keys) & a.keys(): assert a[k] == pytest.approx(b[k], rel=1e-4), (k, a[k], b[k])


def _uga(gpus: int, ckpt1=None, ckpt2=None):
    """Both UGA stages from the same start: (backbone, heads, histories, the next global random draw)."""
    torch.manual_seed(0)
    bb, data = _fresh(), _tiny_data()
    heads, h1 = run_stage(uga.train_stage1, bb, data, UGA_CFG, "cpu", 0, ckpt1, gpus=gpus)
    h2 = run_stage(uga.train_stage2, bb, heads, data, UGA_CFG, "cpu", 0, ckpt2, gpus=gpus)
    return bb, heads, (h1, h2), torch.rand(3)


@pytest.fixture(scope="module")
def uga_one_process():
    return _uga(1)


def test_uga_two_processes_match_one(uga_one_process):
    bb1, heads1, (a1, a2), draw1 = uga_one_process
    bb2, heads2, (b1, b2), draw2 = _uga(2)
    _losses_close(a1, b1)
    _losses_close(a2, b2, ("loss", "cvg", "intra", "lam"))
    assert [h["edges"] for h in a2] == [h["edges"] for h in b2]  # the same cross-view graph every epoch
    assert _max_diff(bb1.state_dict(), bb2.state_dict()) < 1e-5
    assert _max_diff(heads1.state_dict(), heads2.state_dict()) < 1e-5
    assert torch.equal(draw1, draw2)  # the driver's random state is left as one process leaves it


def test_a_two_process_checkpoint_resumes_in_one_process(uga_one_process, tmp_path, monkeypatch):
    """Stage 1 in 2 processes; stage 2 in 2 processes stopped after one epoch (a check run caps every loop at one
    epoch); rank 0 wrote both checkpoints. Reading stage 1 back and finishing stage 2 in 1 process gives the
    uninterrupted single-process run."""
    torch.manual_seed(0)
    bb, data = _fresh(), _tiny_data()
    heads, h1 = run_stage(uga.train_stage1, bb, data, UGA_CFG, "cpu", 0, tmp_path / "s1.pt", gpus=2)
    monkeypatch.setenv(CHECK_ENV, str(tmp_path / "check"))
    h2 = run_stage(uga.train_stage2, bb, heads, data, UGA_CFG, "cpu", 0, tmp_path / "s2.pt", gpus=2)
    assert (len(h1), len(h2)) == (2, 1)
    monkeypatch.delenv(CHECK_ENV)
    bb, heads, (r1, r2), _ = _uga(1, tmp_path / "s1.pt", tmp_path / "s2.pt")
    bb_ref, heads_ref, (a1, a2), _ = uga_one_process
    _losses_close(r1, a1)
    _losses_close(r2, a2)
    assert _max_diff(bb.state_dict(), bb_ref.state_dict()) < 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check", "s1.pt", "s2.pt"]


def test_calr_two_processes_match_one():
    """30 images (15 per camera): every extraction batch splits unevenly (8 + 7 rows)."""
    bank, pids, cams = _toy(n_per=5)
    local = np.where(cams == 0, pids, 2 - pids)
    out = {}
    for gpus in (1, 2):
        intra = run_stage(intra_camera_stage, bank, cams, _toy_cfg(intra_ratio=5), "cpu", 1, gpus=gpus)
        model, hist = run_stage(inter_camera_stage, bank, cams, _toy_cfg(), local, "cpu", 3, gt=pids, gpus=gpus)
        out[gpus] = intra, model, hist
    (i1, m1, h1), (i2, m2, h2) = out[1], out[2]
    assert (i1["local"] == i2["local"]).all() and (i1["untrained"] == i2["untrained"]).all()
    for c in i1["runs"]: _losses_close(i1["runs"][c]["history"], i2["runs"][c]["history"], ("loss", "silhouette"))
    assert [(h["n_clusters"], h["n_dropped"]) for h in h1] == [(h["n_clusters"], h["n_dropped"]) for h in h2]
    _losses_close(h1, h2, ("loss", "loss_cam"))
    assert m2.cam_head is not None and _max_diff(m1.state_dict(), m2.state_dict()) < 2e-3
    assert "_reid_ddp" not in m2.__dict__  # what comes back is a plain module


def test_the_ceilings_supervised_training_in_two_processes_matches_one():
    """Batches of 5: every training step splits unevenly (3 + 2 rows)."""
    bank, pids, cams = _toy(n_per=4)
    out = {}
    for gpus in (1, 2):
        bb = _fresh()
        hist = run_stage(train_supervised, bb, bank, pids + 1, cams, Budget(2, 2, batch=5, instances=2, lr=1e-3),
                         net_settings("smoke"), "cpu", 5, gpus=gpus)
        out[gpus] = bb.state_dict(), hist
    _losses_close(out[1][1], out[2][1])
    assert _max_diff(out[1][0], out[2][0]) < 2e-3  # Adam


def _stgal_toy() -> STGALData:
    """Four people, two cameras, four frames each (the STGAL chapter's toy)."""
    g = torch.Generator().manual_seed(0)
    colours = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
    pid, cam = np.repeat([1, 2, 3, 4], 8), np.tile(np.repeat([0, 1], 4), 4)
    t = np.tile(np.arange(4) * 10, 8) + 500 * cam + 5000 * (pid > 2)
    img = (colours[pid - 1][:, :, None, None] + torch.randint(-20, 20, (32, 3, 16, 8), generator=g)).clamp(0, 255)
    lab = assume_tracklets(pid, cam, t)
    groups = cooccurrence_groups(lab.t_start, lab.t_end, lab.cam, 10).members
    return STGALData(ImageBank(img.to(torch.uint8)), cam, cam, t, lab.tracklet, groups, n_vcams=2)


def test_stgal_two_processes_match_one():
    data = _stgal_toy()
    cfg = stgal_config(25.0, arch="small", height=16, width=8, batch=16, lr_stage1=0.02, iters_stage1=6, chunks=2)
    out = {}
    for gpus in (1, 2):
        torch.manual_seed(0)
        net = build_backbone("small", widths=(8, 16), depth=1)
        hist = run_stage(train_triplet, net, stage1_batches(data, cfg.batch), data.bank, cfg, 1, "cpu", gpus=gpus)
        out[gpus] = net.state_dict(), hist
    _losses_close(out[1][1], out[2][1], ("loss", "valid_batches"))
    assert _max_diff(out[1][0], out[2][0]) < 1e-5


def test_run_stage_refuses_bad_calls_before_starting_and_reports_a_rank_error():
    bb, data = _fresh(), _tiny_data()
    for gpus in (0, 1.5, True):
        with pytest.raises(BadInputError, match="gpus"): run_stage(uga.train_stage1, bb, data, UGA_CFG, "cpu", gpus=gpus)
    with pytest.raises(BadInputError, match="no device argument"): run_stage(uga.tracklet_pids, 1, 2, 3, gpus=2)
    if torch.cuda.device_count() < 64:
        with pytest.raises(BadInputError, match="CUDA devices"): run_stage(uga.train_stage1, bb, data, UGA_CFG, "cuda", gpus=64)
    bad = uga.UGAConfig(softmax="nope")
    with pytest.raises(RuntimeError, match=r"(?s)train_stage2 in 2 processes failed.*softmax='nope'"):
        run_stage(uga.train_stage2, bb, uga.CameraHeads(bb.out_dim, [2, 2]), data, bad, "cpu", gpus=2)
