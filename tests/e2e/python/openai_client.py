"""Drives Engram's OpenAI-compatible endpoints with the official `openai` client,
unchanged: only base_url points at Engram. Run by tests/e2e/answer.rs with the
server's URL and a collection holding the Zorvania facts; exits non-zero on failure."""

import base64
import json
import math
import struct
import sys
import urllib.request

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed-on-loopback")

ids = [m.id for m in client.models.list()]
for want in ["smollm2-135m-instruct", "minilm", "engram/facts", "engram/facts/rag", "engram/facts/context"]:
    assert want in ids, (want, ids)

question = [{"role": "user", "content": "What is the capital of Zorvania?"}]
r = client.chat.completions.create(model="engram/facts/rag", messages=question, max_tokens=24)
answer = r.choices[0].message.content
assert r.choices[0].message.role == "assistant"
assert "Plimsk" in answer, answer
assert r.choices[0].finish_reason in ("stop", "length")
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0

# Streaming gives the same (greedy) answer, piece by piece.
pieces = []
finish = None
for chunk in client.chat.completions.create(model="engram/facts/rag", messages=question, max_tokens=24, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
assert len(pieces) > 1, pieces
assert "".join(pieces).strip() == answer, ("".join(pieces), answer)
assert finish in ("stop", "length"), finish

# The base model with no collection.
r = client.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "What is the capital of France?"}],
    max_tokens=16)
assert "Paris" in r.choices[0].message.content, r.choices[0].message.content

# Embeddings: the client asks for base64 by default and decodes it; compare with /embed.
texts = ["The capital of Zorvania is Plimsk.", "Bananas are yellow."]
e = client.embeddings.create(model="minilm", input=texts)
assert [d.index for d in e.data] == [0, 1]
vectors = [d.embedding for d in e.data]
assert all(len(v) == 384 for v in vectors)
req = urllib.request.Request(base + "/embed", data=json.dumps({"texts": texts}).encode(),
                             headers={"Content-Type": "application/json"})
native = json.load(urllib.request.urlopen(req))["vectors"]
for v, n in zip(vectors, native):
    assert max(abs(a - b) for a, b in zip(v, n)) < 1e-6
# Explicit float format, and a collection's own encoder.
e = client.embeddings.create(model="engram/facts", input="Plimsk", encoding_format="float")
assert len(e.data[0].embedding) == 384
assert abs(math.sqrt(sum(x * x for x in e.data[0].embedding)) - 1.0) < 1e-3

# Errors arrive as the client's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=question)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as err:
    assert "GET /v1/models" in str(err), err
try:
    client.chat.completions.create(model="engram/facts/weights", messages=question)
    raise AssertionError("weights mode answered without an adapter")
except openai.ConflictError as err:
    assert "promote the collection" in str(err), err
try:
    client.chat.completions.create(model="engram/nowhere/rag", messages=question)
    raise AssertionError("an unknown collection was accepted")
except openai.NotFoundError:
    pass

print("openai client OK:", openai.__version__)
