"""Tests of reid_nb.sampling: image decoding, the image bank, batched augmentation and the two batch samplers."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from reid_nb import sampling
from reid_nb.core import BadInputError
from reid_nb.sampling import (IMAGENET_MEAN, IMAGENET_STD, Augment, ImageBank, camera_balanced_batches, erase_boxes,
                              identity_batches, identity_pass, load_image)


@pytest.fixture
def image_files(tmp_path):
    """Five small random JPEGs and PNGs of different sizes."""
    rng = np.random.default_rng(0); paths = []
    for i in range(5):
        arr = rng.integers(0, 256, (40 + 3 * i, 20 + i, 3), dtype=np.uint8)
        p = tmp_path / f"{i:04d}_c{i % 2 + 1}s1_000{i}01_00.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(arr).save(p); paths.append(p)
    return paths


# ---------------------------------------------------------------- decoding and the bank

def test_bank_matches_torchvision_pipeline(image_files):
    """bank.batch == torchvision Resize(bicubic) -> ToTensor -> Normalize, the official test transform."""
    ref = T.Compose([T.Resize((16, 8), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                     T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    bank = ImageBank.from_records(SimpleNamespace(path=np.array([str(p) for p in image_files])), 16, 8)
    assert len(bank) == 5 and bank.size == (16, 8) and bank.images.dtype == torch.uint8
    x = bank.batch(np.array([3, 0]))
    for row, i in enumerate([3, 0]):
        expected = ref(Image.open(image_files[i]).convert("RGB"))
        assert torch.allclose(x[row], expected, atol=1e-6)


def test_bilinear_resample(image_files):
    a = load_image(image_files[0], 12, 6, resample="bilinear")
    b = np.asarray(Image.open(image_files[0]).convert("RGB").resize((6, 12), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(a, b)
    with pytest.raises(BadInputError, match="resample"):
        ImageBank.from_records(image_files, 12, 6, resample="lanczos")


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"\xff\xd8\xff\xe0garbage", "cannot decode")])
def test_corrupt_image_names_the_file(tmp_path, image_files, content, message):
    bad = tmp_path / "0007_c1s1_000001_00.jpg"; bad.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as e:
        ImageBank.from_records([*image_files, bad], 16, 8)
    assert "0007_c1s1_000001_00.jpg" in str(e.value)


def test_truncated_jpeg_and_missing_file(tmp_path, image_files):
    data = image_files[1].read_bytes(); cut = tmp_path / "cut.jpg"; cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cut.jpg"):
        load_image(cut, 16, 8)
    with pytest.raises(BadInputError, match="nothere.jpg: image file not found"):
        load_image(tmp_path / "nothere.jpg", 16, 8)


def test_threads_decode_the_same(image_files):
    one = ImageBank.from_records(image_files, 16, 8, workers=1)
    assert torch.equal(one.images, ImageBank.from_records(image_files, 16, 8, workers=3).images)


def test_bank_cache_skips_decoding(tmp_path, image_files, monkeypatch):
    bank = ImageBank.from_records(image_files, 16, 8, cache_dir=tmp_path / "c")
    monkeypatch.setattr(sampling, "load_image", lambda *a, **k: pytest.fail("decoded although cached"))
    again = ImageBank.from_records(image_files, 16, 8, cache_dir=tmp_path / "c")
    assert torch.equal(again.images, bank.images) and again.paths == bank.paths
    with pytest.raises(pytest.fail.Exception):  # another size is another cache entry, so it decodes
        ImageBank.from_records(image_files, 8, 4, cache_dir=tmp_path / "c")


def test_bank_rejects_wrong_tensor():
    with pytest.raises(BadInputError, match="uint8"):
        ImageBank(torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------- augmentation

def _images(n=6, h=16, w=8):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(3))


def test_augment_reproducible_from_seed():
    x = _images()
    a, b, c = Augment(generator=5)(x), Augment(generator=5)(x), Augment(generator=6)(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(1); d = Augment()(x)
    torch.manual_seed(1); e = Augment()(x)
    assert torch.equal(d, e)  # generator=None is seeded from torch's global generator


def test_flip_only_is_torchvision_hflip():
    x = _images(200)
    out = Augment(flip=0.5, pad=0, crop=False, erase=0, generator=0)(x)
    flipped = torch.tensor([torch.equal(o, T.functional.hflip(i)) for o, i in zip(out, x)])
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped ^ same).all() and 70 < flipped.sum() < 130


@pytest.mark.parametrize("p", [3, 10])  # 10 > width 8: some crops lie entirely in the padding
def test_pad_crop_is_a_shift_of_the_padded_image(p):
    """Brute force: each output equals the black-padded input cropped at some offset in 0..2p."""
    x = _images(20)
    aug = Augment(flip=0, pad=p, crop=True, erase=0, generator=2)
    out = aug(x)
    padded = aug.black.expand(20, 3, 16 + 2 * p, 8 + 2 * p).clone(); padded[:, :, p:-p, p:-p] = x
    offsets = set()
    for b in range(20):
        hits = [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
                if torch.equal(out[b], padded[b, :, i:i + 16, j:j + 8])]
        assert len(hits) >= 1; offsets.add(hits[0])
    assert len(offsets) > 5


def _reference_box(rng, H, W, sl=0.02, sh=0.4, r1=0.3):
    """Cluster-Contrast's RandomErasing box draw, one image at a time (None: no box found in 100 tries)."""
    for _ in range(100):
        area, ratio = H * W * rng.uniform(sl, sh), rng.uniform(r1, 1 / r1)
        h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if w < W and h < H: return rng.randint(0, H - h), rng.randint(0, W - w), h, w
    return None


def test_erase_boxes_match_the_reference_distribution():
    import random
    from scipy.stats import ks_2samp
    rng, H, W = random.Random(0), 64, 32
    ref = np.array([_reference_box(rng, H, W) for _ in range(3000)])
    ours = erase_boxes(3000, H, W, torch.Generator().manual_seed(1), p=1.0).numpy()
    for col in range(4):  # top, left, h, w
        assert ks_2samp(ref[:, col], ours[:, col]).pvalue > 1e-3


def test_random_erasing_boxes():
    n, H, W = 4000, 64, 32
    box = erase_boxes(n, H, W, torch.Generator().manual_seed(0), p=0.5)
    on = box[:, 2] > 0
    assert abs(on.float().mean().item() - 0.5) < 0.03
    top, left, h, w = box[on].T.double()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    assert (h < H).all() and (w < W).all()
    area = h * w / (H * W)  # rounding of h and w widens the [0.02, 0.4] range a little
    assert area.min() > 0.01 and area.max() < 0.45 and 0.15 < area.mean() < 0.25


def test_erase_fills_a_rectangle_with_the_mean():
    x = torch.full((50, 3, 32, 16), 7.0)
    out = Augment(flip=0, pad=0, crop=False, erase=1.0, generator=4)(x)
    for img in out:
        mask = img[0] != 7.0
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols) > 0  # a full rectangle
        assert torch.allclose(img[:, mask], torch.tensor(IMAGENET_MEAN)[:, None])


def test_bank_augment_on_uint8_equals_augment_on_floats():
    bank = ImageBank(torch.randint(0, 256, (10, 3, 16, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    idx = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    a = bank.batch(idx, Augment(generator=11))
    b = Augment(generator=11)(bank.batch(idx))
    assert torch.equal(a, b) and not torch.equal(a, bank.batch(idx))


def test_augment_state_dict_roundtrip():
    aug, x = Augment(generator=9), _images()
    sd = {"generator": aug.state_dict()["generator"].clone()}
    first = aug(x); aug.load_state_dict(sd)
    assert torch.equal(aug(x), first)


# ---------------------------------------------------------------- CALR's identity sampler

def _blocks(stream, labels):
    """Split a pass into per-identity blocks (consecutive equal labels; each identity appears once per pass)."""
    cuts = np.flatnonzero(np.diff(labels[stream])) + 1
    return np.split(stream, cuts)


def _world(seed=0, n_ids=30, n_cams=4):
    rng = np.random.default_rng(seed); labels, cams = [], []
    for pid in range(n_ids):
        n, seen = rng.integers(1, 12), rng.choice(n_cams, rng.integers(1, n_cams + 1), replace=False)
        labels += [pid] * n; cams += list(rng.choice(seen, n))
    labels, cams = np.array(labels), np.array(cams)
    labels[rng.random(len(labels)) < 0.1] = -1
    return labels, cams


@pytest.mark.parametrize("seed", range(5))
def test_identity_pass_rules(seed):
    labels, cams = _world(seed); K = 4
    stream = identity_pass(labels, cams, K, np.random.default_rng(seed))
    blocks = _blocks(stream, labels)
    ids = sorted(labels[b[0]] for b in blocks)
    assert ids == sorted(set(labels[labels >= 0]))  # every identity once, -1 never
    for b in blocks:
        pid = labels[b[0]]; members = np.flatnonzero(labels == pid)
        other = members[cams[members] != cams[b[0]]]
        assert (labels[b] == pid).all()
        if len(members) == 1: assert len(b) == 1; continue
        assert len(b) == K
        rest = b[1:]
        if len(other): assert (cams[rest] != cams[b[0]]).all()  # other cameras first
        else: assert (rest != b[0]).all()  # any camera, never the anchor again
        pool = len(other) if len(other) else len(members) - 1
        if pool >= K: assert len(set(rest)) == K - 1  # without replacement when the pool holds >= K


def test_identity_pass_replacement_when_pool_is_exactly_k_minus_1():
    """The code's rule: with K-1 candidates it still samples with replacement, so repeats occur."""
    labels, cams = np.zeros(4, int), np.array([0, 1, 1, 1])  # anchor 0 -> 3 others = K-1 for K=4
    repeats = 0
    for s in range(50):
        st = identity_pass(labels, cams, 4, np.random.default_rng(s))
        if st[0] == 0: repeats += len(set(st[1:])) < 3
    assert repeats > 0


def test_identity_batches_sizes_and_epochs():
    labels, cams = _world(1)
    one = list(identity_batches(labels, cams, 16, 4, np.random.default_rng(0)))
    n_stream = len(identity_pass(labels, cams, 4, np.random.default_rng(0)))
    assert len(one) == n_stream // 16 and all(len(b) == 16 for b in one)  # drop_last
    many = list(identity_batches(labels, cams, 16, 4, np.random.default_rng(0), n_batches=3 * len(one) + 1))
    assert len(many) == 3 * len(one) + 1 and all(len(b) == 16 for b in many)
    assert all(np.array_equal(a, b) for a, b in zip(one, many))  # the first pass is the same stream
    again = list(identity_batches(labels, cams, 16, 4, np.random.default_rng(0), n_batches=7))
    assert all(np.array_equal(a, b) for a, b in zip(again, many))


def test_endless_streams():
    from itertools import islice
    labels, cams = _world(2)
    assert len(list(islice(identity_batches(labels, cams, 16, 4, np.random.default_rng(0), n_batches=math.inf), 500))) == 500
    tl, c = _tracklet_world(0)
    assert len(list(islice(camera_balanced_batches(tl, c, rng=np.random.default_rng(0), n_batches=math.inf), 300))) == 300


def test_identity_batches_bad_input():
    with pytest.raises(BadInputError, match="every label is -1"):
        next(identity_batches(np.full(5, -1), np.zeros(5), 2, 2, np.random.default_rng(0)))
    with pytest.raises(BadInputError, match="equal length"):
        next(identity_batches(np.zeros(5), np.zeros(4), 2, 2, np.random.default_rng(0)))
    with pytest.raises(BadInputError, match="batch_size"):
        next(identity_batches(np.array([0, 0, 1]), np.zeros(3), 64, 2, np.random.default_rng(0), n_batches=1))


# ---------------------------------------------------------------- UGA's camera-balanced sampler

def _tracklet_world(seed=0):
    rng = np.random.default_rng(seed); tl, cams = [], []
    for c, n_tracks in enumerate([7, 2, 5]):  # camera 1 has fewer tracklets than P = 4
        for t in range(n_tracks):
            n = rng.integers(1, 9); tl += [t] * n; cams += [c] * n
    tl, cams = np.array(tl), np.array(cams)
    tl[rng.random(len(tl)) < 0.05] = -1
    return tl, cams


def test_camera_balance_and_tracklet_rules():
    tl, cams = _tracklet_world(); P, K = 4, 4
    batches = list(camera_balanced_batches(tl, cams, P, K, rng=np.random.default_rng(0), n_batches=20))
    for b in batches:
        assert len(b) == 3 * P * K and (np.bincount(cams[b], minlength=3) == P * K).all()
        assert (tl[b] >= 0).all()
        for c in (0, 2):  # enough tracklets: P distinct ones, K images each
            t, n = np.unique(tl[b][cams[b] == c], return_counts=True)
            assert len(t) == P and (n == K).all()
        for blk in b.reshape(-1, K):  # one tracklet per block; distinct images when it has >= K
            assert len(set(zip(tl[blk], cams[blk]))) == 1
            size = ((tl == tl[blk[0]]) & (cams == cams[blk[0]])).sum()
            if size >= K: assert len(set(blk)) == K


def test_camera_balanced_visits_every_tracklet():
    tl, cams = _tracklet_world(1); P = 2
    batches = list(camera_balanced_batches(tl, cams, P, 2, rng=np.random.default_rng(3), n_batches=4))
    for c in range(3):
        all_t = set(tl[(cams == c) & (tl >= 0)])
        first = math.ceil(len(all_t) / P)
        seen = set(np.concatenate([tl[b][cams[b] == c] for b in batches[:first]]))
        assert seen == all_t  # every tracklet within one cycle


def test_camera_balanced_default_epoch_length():
    tl, cams = _tracklet_world(2)
    n = len(list(camera_balanced_batches(tl, cams, rng=np.random.default_rng(0))))
    assert n == math.ceil((tl >= 0).sum() / (3 * 16))


def test_cache_root_is_outside_the_data_folder(tmp_path, monkeypatch):
    from reid_nb.core import cache_root, data_root
    monkeypatch.delenv("REID_NB_CACHE", raising=False)
    monkeypatch.setenv("REID_NB_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("REID_NB_DATA", str(tmp_path / "data"))
    assert cache_root() == tmp_path / "res" / "cache" and data_root() not in cache_root().parents
    monkeypatch.setenv("REID_NB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_truncated_bank_cache_is_named_moved_aside_and_decoded_again(tmp_path, image_files, capsys):
    """Issue 26 case 5: a decoded-image cache cut short is named, kept as .corrupt-1, and rebuilt."""
    bank = ImageBank.from_records(image_files, 16, 8, cache_dir=tmp_path / "c")
    cache = next((tmp_path / "c").glob("imagebank_*.pt"))
    whole = cache.read_bytes()
    cache.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    again = ImageBank.from_records(image_files, 16, 8, cache_dir=tmp_path / "c")
    out = capsys.readouterr().out
    assert torch.equal(again.images, bank.images) and torch.equal(torch.load(cache)["images"], bank.images)
    assert f"decoded-image cache {cache} is unreadable (" in out and f"moved aside to {cache}.corrupt-1, rebuilding" in out
    assert (tmp_path / "c" / f"{cache.name}.corrupt-1").stat().st_size == len(whole) // 2
    ImageBank.from_records(image_files, 16, 8, cache_dir=tmp_path / "c")
    assert capsys.readouterr().out == f"reusing decoded-image cache {cache}\n"
