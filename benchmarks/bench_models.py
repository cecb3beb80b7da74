"""Benchmark: training throughput (forward + backward + SGD step) of the backbones on this machine's CPU.

Reference in the same process: torchvision ResNet-50 at 256x128 (the papers' network). Prints images per second,
MACs per image, the ratio to the reference, and the peak resident memory.
Run: .venv/bin/python benchmarks/bench_models.py
"""
import resource
import time

import torch

from reid_nb.models import BNNeck, build_backbone, count_macs


def images_per_second(arch: str, hw: tuple, batch: int, iters: int, **kw) -> tuple[float, int]:
    """Train-step throughput of a backbone + BN neck on random images; (images/s, MACs per image)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(build_backbone(arch, **kw), BNNeck(build_backbone(arch, **kw).out_dim))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *hw)
    def step():
        opt.zero_grad(); net(x).pow(2).mean().backward(); opt.step()
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(iters): step()
    return batch * iters / (time.perf_counter() - t), count_macs(net[0], *hw)


def main():
    torch.set_num_threads(2)
    ref_ips, ref_macs = images_per_second("resnet50", (256, 128), 8, 3)
    rows = [("resnet50 256x128 (reference)", ref_ips, ref_macs)]
    for name, hw, kw in [("small 16-32-64-128 64x32", (64, 32), {}),
                         ("small 16-32-64-128 depth 1 64x32", (64, 32), {"depth": 1}),
                         ("small 16-32-64-128 128x64", (128, 64), {}),
                         ("resnet50 64x32", (64, 32), {})]:
        ips, macs = images_per_second(name.split()[0], hw, 64, 5, **kw)
        rows.append((name, ips, macs))
    print("2 torch threads, forward + backward + SGD step")
    for name, ips, macs in rows:
        print(f"{name:36s} {ips:8.1f} images/s  {macs / 1e6:8.1f} MMAC/image  {ips / ref_ips:7.1f}x reference")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
