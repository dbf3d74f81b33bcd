"""torch.topk(q @ x.T) on the GPU, the same shapes as kernels/examples/gpu_topk.rs,
end to end like GpuExact::search (queries from host memory, results back to it),
then a table of ratios against the JSON lines gpu_topk printed.

python3 torch_topk.py N DIM METRIC BATCHES KS OURS.jsonl
"""
import json
import sys
import time

import torch

n, dim, metric = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
batches = [int(b) for b in sys.argv[4].split(",")]
ks = [int(k) for k in sys.argv[5].split(",")]
ours_path = sys.argv[6]
torch.backends.cuda.matmul.allow_tf32 = False  # FP32, like ours
dev = torch.device("cuda")
g = torch.Generator(device=dev).manual_seed(0)
x = torch.rand(n, dim, device=dev, generator=g) * 2 - 1
if metric == "cosine":
    x = torch.nn.functional.normalize(x, dim=1)
xn = (x * x).sum(1)
qs_all = torch.rand(max(batches), dim) * 2 - 1


def search(q_cpu, k):
    q = q_cpu.to(dev)
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    s = q @ x.T
    if metric == "l2":
        v, i = torch.topk(xn - 2 * s, k, dim=1, largest=False)
    else:
        v, i = torch.topk(s, k, dim=1)
    return v.cpu(), i.cpu()


rows = []
for k in ks:
    for b in batches:
        q = qs_all[:b].contiguous()
        search(q, k)
        torch.cuda.synchronize()
        times = []
        start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < 0.5 and len(times) < 50):
            t = time.perf_counter()
            search(q, k)
            times.append(time.perf_counter() - t)
        times.sort()
        ms = times[len(times) // 2] * 1e3
        row = {"impl": "torch", "n": n, "dim": dim, "metric": metric, "q": b, "k": k, "ms": ms, "qps": b / (ms / 1e3)}
        rows.append(row)
        print(json.dumps(row))
        print(f"      torch n={n} dim={dim} {metric} q={b:>5} k={k:>4}: {ms:9.3} ms/batch {row['qps']:12.1f} QPS", file=sys.stderr)

ours = [json.loads(l) for l in open(ours_path) if l.startswith("{")]
gpu = {(r["q"], r["k"]): r for r in ours if r["impl"] == "engram-gpu"}
cpu = [r for r in ours if r["impl"] == "engram-cpu"]
print(f"\n== n={n} dim={dim} {metric} on {torch.cuda.get_device_name()}: QPS (higher is better)")
print(f"{'q':>6} {'k':>5} {'engram-gpu':>12} {'torch':>12} {'gpu/torch':>10}")
for r in rows:
    o = gpu.get((r["q"], r["k"]))
    if o:
        print(f"{r['q']:>6} {r['k']:>5} {o['qps']:>12.1f} {r['qps']:>12.1f} {o['qps'] / r['qps']:>9.2f}x")
for c in cpu:
    best = max((o for o in gpu.values() if o["k"] == c["k"]), key=lambda o: o["qps"], default=None)
    same = gpu.get((c["q"], c["k"]))
    print(f"engram-cpu ({c['threads']} threads) q={c['q']} k={c['k']}: {c['qps']:.1f} QPS; "
          f"gpu same batch {same['qps'] / c['qps']:.1f}x" if same else "", end="")
    if best:
        print(f"; gpu best batch (q={best['q']}) {best['qps'] / c['qps']:.1f}x")
