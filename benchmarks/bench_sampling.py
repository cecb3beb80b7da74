"""Benchmark: the ImageBank + batched Augment against the per-image torchvision pipeline of the official code.

Reference (Cluster-Contrast / CALR, one DataLoader worker): for every image of every epoch, open the JPEG, then
Resize(256x128, bicubic) -> RandomHorizontalFlip -> Pad(10) -> RandomCrop -> ToTensor -> Normalize -> RandomErasing.
Ours: decode every image once into an ImageBank, then per batch `bank.batch(idx, Augment())`.
Prints seconds per epoch of N images for both, the ratio, the one-time decoding cost and the peak resident memory.
Run: .venv/bin/python benchmarks/bench_sampling.py [N]
"""
import math
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from reid_nb.sampling import IMAGENET_MEAN, IMAGENET_STD, Augment, ImageBank


class RandomErasing:
    """Cluster-Contrast's RandomErasing (per image, after Normalize, filled with the ImageNet mean values)."""
    def __init__(self, p=0.5, sl=0.02, sh=0.4, r1=0.3, mean=IMAGENET_MEAN):
        self.p, self.sl, self.sh, self.r1, self.mean = p, sl, sh, r1, mean

    def __call__(self, img):
        if random.uniform(0, 1) >= self.p: return img
        for _ in range(100):
            area = img.size(1) * img.size(2) * random.uniform(self.sl, self.sh)
            ratio = random.uniform(self.r1, 1 / self.r1)
            h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if w < img.size(2) and h < img.size(1):
                x1, y1 = random.randint(0, img.size(1) - h), random.randint(0, img.size(2) - w)
                for c in range(3): img[c, x1:x1 + h, y1:y1 + w] = self.mean[c]
                return img
        return img


def make_images(folder: Path, n: int) -> list[Path]:
    """n Market-sized (128x64) JPEGs with some structure."""
    rng = np.random.default_rng(0); paths = []
    for i in range(n):
        a = (rng.random((128, 64, 3)) * 60 + np.linspace(0, 180, 64)[None, :, None]).astype(np.uint8)
        p = folder / f"{i:05d}.jpg"; Image.fromarray(a).save(p, quality=90); paths.append(p)
    return paths


def main(n: int = 1024, batch: int = 64):
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        paths = make_images(Path(d), n)
        ref = T.Compose([T.Resize((256, 128), interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(),
                         T.Pad(10), T.RandomCrop((256, 128)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                         RandomErasing()])
        t = time.perf_counter()
        for s in range(0, n, batch):
            torch.stack([ref(Image.open(p).convert("RGB")) for p in paths[s:s + batch]])
        t_ref = time.perf_counter() - t
        t = time.perf_counter(); bank = ImageBank.from_records(paths, 256, 128); t_decode = time.perf_counter() - t
        aug, order = Augment(generator=0), np.random.default_rng(0).permutation(n)
        t = time.perf_counter()
        for s in range(0, n, batch): bank.batch(order[s:s + batch], aug)
        t_ours = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"images per epoch: {n}, batch {batch}, 256x128, 2 torch threads")
    print(f"reference torchvision per-image pipeline: {t_ref:.2f} s/epoch ({1e3 * t_ref / n:.2f} ms/image)")
    print(f"ImageBank + batched Augment:              {t_ours:.2f} s/epoch ({1e3 * t_ours / n:.2f} ms/image)")
    print(f"speed-up per epoch: {t_ref / t_ours:.1f}x; one-time decoding {t_decode:.2f} s "
          f"(pays off after {t_decode / max(t_ref - t_ours, 1e-9):.2f} epochs)")
    print(f"bank size {bank.images.numel() / 2**20:.0f} MiB uint8; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
