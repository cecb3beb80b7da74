"""Benchmark: training images per second through reid-nb's one training loop (`reid_nb.train.sgd_steps`), with and
without mixed precision (`amp`), channels_last and `torch.compile`, against the plain fp32 loop in the same process.

CPU: the small CPU net (widths 16-32-64-128, depth 2) at 64x32, batch 64, and ResNet-50 at 256x128, batch 8, each in
fp32, bf16 autocast, channels_last and both, plus fp32 and bf16 with channels_last at 1 thread (a `reproduce`
worker's share of 2 cores, against the fp32 1-thread loop); the small net also compiled
(`torch.compile`, inductor: needs a C++ compiler; the compilation, about a minute, happens in the untimed warm-up
step), in fp32 and under bf16 autocast. bf16 pays only where the CPU has bf16 instructions (avx512_bf16 / amx_bf16);
the header line says whether this one has them. CUDA (when present):
ResNet-50 at 256x128, batch 64, fp32 / bf16 / fp16 (with a gradient scaler), each with and without channels_last,
and a plain torchvision ResNet-50 AMP loop (no reid-nb code) as the card's reference throughput.
Settings are timed in interleaved rounds and the best round is kept, which damps the noise of a shared machine.
Run: .venv/bin/python benchmarks/bench_train.py [--rounds 2]
"""
import argparse
import os
import time

import torch
import torchvision

from reid_nb.models import BNNeck, build_backbone
from reid_nb.train import sgd_steps


def make_run(arch: str, hw: tuple, batch: int, device: str, channels_last: bool, compile: bool = False, **kw):
    """A backbone + BN neck (compiled when asked), its optimiser and a fixed random batch: (net, opt, x)."""
    torch.manual_seed(0)
    bb = build_backbone(arch, channels_last=channels_last, **kw)
    net = torch.nn.Sequential(bb, BNNeck(bb.out_dim)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    return torch.compile(net) if compile else net, opt, torch.randn(batch, 3, *hw, device=device)


def time_loop(net, opt, x, iters: int, amp) -> float:
    """Images per second of `iters` sgd_steps iterations (after one warm-up step)."""
    step = lambda _: net(x).float().pow(2).mean()
    sgd_steps(1, [0], step, opt, amp=amp)
    sync(x.device)
    t = time.perf_counter()
    sgd_steps(iters, range(iters), step, opt, amp=amp)
    sync(x.device)
    return len(x) * iters / (time.perf_counter() - t)


def sync(device):
    """Wait for queued CUDA work (no-op on CPU)."""
    if device.type == "cuda": torch.cuda.synchronize()


def plain_torchvision_amp(batch: int, hw: tuple, iters: int, dtype) -> float:
    """The card's reference: torchvision ResNet-50 train step under autocast, channels_last, no reid-nb code."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *hw, device="cuda").contiguous(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype): loss = net(x).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters): step()
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t)


def measure(cases: list, rounds: int) -> dict:
    """Best images/s of every case over interleaved rounds; a case is (name, threads, kwargs, iters, amp)."""
    best = {}
    for r in range(rounds):
        for name, threads, kw, iters, amp in cases:
            torch.set_num_threads(threads)
            net, opt, x = make_run(**kw)
            ips = time_loop(net, opt, x, iters, amp)
            best[name] = max(best.get(name, 0.0), ips)
            print(f"  round {r + 1}: {name:48s} {ips:9.1f} images/s", flush=True)
    return best


def cpu_cases() -> list:
    """CPU settings: each network in fp32 / bf16 / channels_last / both at 2 threads; fp32, and fp32 / bf16 with
    channels_last, at 1 thread."""
    nets = [("small 64x32 b64", dict(arch="small", hw=(64, 32), batch=64, widths=(16, 32, 64, 128), depth=2), 4),
            ("resnet50 256x128 b8", dict(arch="resnet50", hw=(256, 128), batch=8), 2)]
    cases = []
    for label, kw, iters in nets:
        for tag, amp, cl in (("fp32", None, False), ("bf16", "bf16", False), ("fp32 channels_last", None, True),
                             ("bf16 channels_last", "bf16", True)):
            cases.append((f"{label} {tag}, 2 threads", 2, dict(kw, device="cpu", channels_last=cl), iters, amp))
        cases.append((f"{label} fp32, 1 thread", 1, dict(kw, device="cpu", channels_last=False), iters, None))
        for tag, amp in (("fp32", None), ("bf16", "bf16")):  # a `reproduce` worker on 2 cores: two 1-thread runs
            cases.append((f"{label} {tag} channels_last, 1 thread", 1, dict(kw, device="cpu", channels_last=True),
                          iters, amp))
    small = dict(nets[0][1], device="cpu", channels_last=False, compile=True)
    cases += [(f"{nets[0][0]} {tag} compiled, 2 threads", 2, small, nets[0][2], amp)
              for tag, amp in (("fp32", None), ("bf16", "bf16"))]
    return cases


def cuda_cases() -> list:
    """CUDA settings: ResNet-50 at 256x128, batch 64, fp32 / bf16 / fp16, with and without channels_last."""
    kw = dict(arch="resnet50", hw=(256, 128), batch=64, device="cuda")
    return [(f"resnet50 256x128 b64 {amp or 'fp32'}{' channels_last' if cl else ''}", torch.get_num_threads(),
             dict(kw, channels_last=cl), 20, amp) for amp in (None, "bf16", "fp16") for cl in (False, True)]


def report(best: dict, ref_of) -> None:
    """Print images/s and the speed-up against each row's fp32 reference."""
    for name, ips in best.items():
        ref = best[ref_of(name)]
        print(f"{name:48s} {ips:9.1f} images/s  {ips / ref:5.2f}x {ref_of(name)}")


def _cpu_ref(name: str) -> str:
    """The fp32 row of the same network as `name` at the same number of threads (1 or 2)."""
    threads = "1 thread" if name.endswith("1 thread") else "2 threads"
    return name.split(" fp32")[0].split(" bf16")[0] + f" fp32, {threads}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (best kept)")
    args = ap.parse_args()
    os.environ.setdefault("REID_NB_PROGRESS", "0")
    threads = torch.get_num_threads()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags] or ["no bf16 instructions"]
    print(f"CPU: torch {torch.__version__}, {', '.join(bf16)}, load average {os.getloadavg()[0]:.1f}; forward + "
          "backward + SGD step through sgd_steps")
    best = measure(cpu_cases(), args.rounds)
    report(best, _cpu_ref)
    if not torch.cuda.is_available(): return
    torch.set_num_threads(threads)
    print(f"CUDA: {torch.cuda.get_device_name()}")
    best = measure(cuda_cases(), args.rounds)
    report(best, lambda n: "resnet50 256x128 b64 fp32")
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        ref = plain_torchvision_amp(64, (256, 128), 20, dtype)
        ours = max(v for k, v in best.items() if f" {name}" in k)
        print(f"plain torchvision ResNet-50 {name} channels_last: {ref:9.1f} images/s; best reid-nb {name} loop "
              f"{ours:9.1f} = {100 * ours / ref:5.1f} % of it (target >= 70 %)")


if __name__ == "__main__":
    main()
