"""Checks Engram's prefix adapters against Python `peft` (prefix tuning) on the same
SmolLM2 GGUF, loaded by transformers (`gguf_file=`, dequantized to F32, llama.cpp's
Q/K row permutation undone). Run by tests/e2e/prefix_peft.rs, which wrote DUMP:

  DUMP/engram_prefix/        Engram's export of a prefix (a passage's KV cache)
  DUMP/engram.safetensors    `passage`, `prompt` and `second` token ids; Engram's F32
                             logits for the prompt with that prefix (`with_prefix`) and
                             without (`without`); Engram's greedy continuation (`greedy`)

It prints one JSON line of measurements (the Rust test asserts on them) and writes the
reverse direction for the Rust side to load:

  DUMP/peft_prefix/          a prefix written by `peft` itself (`save_pretrained` of a
                             PrefixTuningConfig model whose prompt embeddings are
                             transformers' own KV cache of the `second` text)
  DUMP/peft.safetensors      `prompt` ids and transformers + peft logits with it

Usage: python peft_prefix_check.py DUMP GGUF
"""
import json
import os
import sys

import torch
from peft import PeftModel, PrefixTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

def compare(ours, theirs):
    """Max and mean |diff| of two logit tables and how often their argmax agrees."""
    diff = (ours - theirs).abs()
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    return {"max_diff": diff.max().item(), "mean_diff": diff.mean().item(), "argmax_agreement": agree}


def greedy(model, prompt, n):
    """Greedy tokens after `prompt`, each step rerunning the whole sequence (no cache:
    the prefix is re-applied by peft on every call exactly as for one forward pass)."""
    ids = prompt.clone()
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids.unsqueeze(0)).logits[0, -1].argmax().item()
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([nxt])])
    return out


def cache_layers(model, ids):
    """transformers' own KV cache of `ids`: per block (keys, values), (kv heads, P, hd)."""
    with torch.no_grad():
        cache = model(ids.unsqueeze(0), use_cache=True).past_key_values
    return [(layer.keys[0], layer.values[0]) for layer in cache.layers]


def as_prompt_embeddings(layers):
    """PEFT's layout of a prefix: (P, layers · 2 · kv · hd), slot 2l keys, 2l + 1 values."""
    slots = []
    for k, v in layers:
        for t in (k, v):
            kv, p, hd = t.shape
            slots.append(t.permute(1, 0, 2).reshape(p, kv * hd))
    return torch.cat(slots, dim=1)


def main():
    dump, gguf = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    base.eval()
    ours = load_file(os.path.join(dump, "engram.safetensors"))
    prompt, passage = ours["prompt"].long(), ours["passage"].long()
    report = {}

    # 1. The exported tensor itself against transformers' cache of the same passage
    # (Engram made the prefix from its own F32 model's cache): a layout bug shows here
    # as a large difference, before any attention runs.
    exported = load_file(os.path.join(dump, "engram_prefix", "adapter_model.safetensors"))
    report["exported_vs_transformers_cache"] = (
        exported["prompt_embeddings"] - as_prompt_embeddings(cache_layers(base, passage))
    ).abs().max().item()

    # 2. Engram's files loaded by peft: the logits of the prompt after the prefix.
    model = PeftModel.from_pretrained(base, os.path.join(dump, "engram_prefix"))
    model.eval()
    report["loaded_config"] = {
        k: getattr(model.peft_config["default"], k)
        for k in ("peft_type", "num_virtual_tokens", "token_dim", "num_attention_heads", "num_layers")
    }
    report["loaded_config"]["peft_type"] = str(report["loaded_config"]["peft_type"])
    with torch.no_grad():
        with_prefix = model(prompt.unsqueeze(0)).logits[0]
        with model.disable_adapter():
            without = model(prompt.unsqueeze(0)).logits[0]
    report["without_prefix"] = compare(ours["without"], without)
    report["with_prefix"] = compare(ours["with_prefix"], with_prefix)
    report["prefix_moves_logits_by"] = (with_prefix - without).abs().max().item()
    report["greedy_peft"] = greedy(model, prompt, len(ours["greedy"]))
    report["greedy_engram"] = ours["greedy"].tolist()

    # 3. The reverse direction: a prefix written by peft itself (its config filled in
    # by peft from the model, its embeddings transformers' cache of a second text).
    text = ours["second"].long()
    layers = cache_layers(base, text)
    fresh = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    written = get_peft_model(fresh, PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=len(text)))
    with torch.no_grad():
        written.prompt_encoder["default"].embedding.weight.copy_(as_prompt_embeddings(layers))
    written.eval()
    written.save_pretrained(os.path.join(dump, "peft_prefix"))
    with torch.no_grad():
        theirs = written(prompt.unsqueeze(0)).logits[0]
    save_file({"prompt": prompt, "logits": theirs.contiguous()}, os.path.join(dump, "peft.safetensors"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
