#!/usr/bin/env python3
"""A PyTorch twin of interference's masked-language model: a second gradient oracle and a
benchmark baseline.

The model is exactly the crate's (src/model/mlm.rs): token + position (+ language) embeddings,
LayerNorm, dropout, post-LN transformer blocks with optional language-specific bottleneck
adapters after the attention output and after the feed-forward output, and an output
projection tied to the token embedding with its own bias. Parameters carry the crate's names
(`tok.weight`, `layers.{i}.attn.q.weight`, `adapters.{lang}.{i}.ffn.up.bias`, ...; PyTorch
layout, `weight` is `[out, in]`), so a checkpoint written by `interference train` loads as is.

    twin.py grads   --checkpoint W.safetensors --batch B.json --out G.safetensors
                    [--pad ID | --tokenizer tokenizer.json] [--device cpu|cuda] [--dtype float32|float64]
    twin.py compare A.safetensors B.safetensors [--rtol 1e-3] [--json OUT.json]
    twin.py bench   [--d 256 --layers 4 --heads 4 --ffn 1024 --vocab 8000 --seq 128 --batch 32
                     --adapters 0 --langs 1 --steps 10 --device cpu|cuda --dtype fp32|bf16
                     --threads N --json]

Needs only torch (safetensors.torch is used when installed; otherwise a small reader and writer
of the format below stand in). Errors are one sentence on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02  # BERT/XLM initial weights (src/model/mlm.rs INIT_STD)
ADAPTER_UP_STD = 1e-3  # adapters start near the identity (ADAPTER_UP_STD)
MASK_NEG = -1e9  # additive attention mask at padded key positions
SPECIALS = 5  # ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK] in a freshly trained tokenizer
MASK_ID = 4


class TwinError(Exception):
    """A user-facing error: printed as one sentence, exit code 1."""


# --------------------------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on the CPU) and the string metadata of a safetensors file."""
    if not path.exists():
        raise TwinError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (OSError, ValueError, struct.error) as e:
        raise TwinError(f"{path}: not a valid safetensors file: {e}") from None
    metadata = header.pop("__metadata__", None) or {}
    try:
        from safetensors.torch import load as st_load  # type: ignore

        return dict(st_load(data)), metadata
    except ImportError:
        pass
    tensors = {}
    body = memoryview(data)[8 + n :]
    for name, info in header.items():
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise TwinError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        raw = bytearray(body[start:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"])
    return tensors, metadata


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Writes tensors and string metadata atomically (temporary file, then rename)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        from safetensors.torch import save as st_save  # type: ignore

        blob = st_save(tensors, metadata=metadata)
    except ImportError:
        header: dict = {"__metadata__": metadata} if metadata else {}
        chunks, offset = [], 0
        for name in sorted(tensors):
            t = tensors[name]
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
            chunks.append(raw)
            offset += len(raw)
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)  # the format allows trailing spaces; keeps data 8-aligned
        blob = struct.pack("<Q", len(head)) + head + b"".join(chunks)
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

DEFAULT_CONFIG = {"dropout": 0.1, "lang_embeddings": False, "adapter_bottleneck": 0, "ln_eps": 1e-12}
CONFIG_KEYS = {
    "vocab_size", "d_model", "layers", "heads", "d_ff", "max_len", "dropout",
    "lang_embeddings", "adapter_bottleneck", "languages", "ln_eps",
}


def check_config(cfg: dict) -> dict:
    """Our ModelConfig with its defaults filled in and its checks (src/model/config.rs)."""
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise TwinError(f"model config has unknown keys {sorted(unknown)}")
    cfg = {**DEFAULT_CONFIG, **cfg}
    for key in ("vocab_size", "d_model", "layers", "heads", "d_ff", "max_len"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise TwinError(f"model {key} must be a positive integer, got {cfg.get(key)!r}")
    if cfg["d_model"] % cfg["heads"]:
        raise TwinError(f"d_model {cfg['d_model']} is not divisible by heads {cfg['heads']}")
    if not cfg.get("languages"):
        raise TwinError("model needs at least one language")
    return cfg


def param_specs(cfg: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) of every parameter, in the crate's registry order."""
    d, ff, r = cfg["d_model"], cfg["d_ff"], cfg["adapter_bottleneck"]
    specs = [("tok.weight", (cfg["vocab_size"], d), "normal"), ("pos.weight", (cfg["max_len"], d), "normal")]
    if cfg["lang_embeddings"]:
        specs.append(("lang.weight", (len(cfg["languages"]), d), "normal"))

    def linear(prefix, out, inp, init="normal"):
        specs.extend([(f"{prefix}.weight", (out, inp), init), (f"{prefix}.bias", (out,), "zeros")])

    def norm(prefix):
        specs.extend([(f"{prefix}.weight", (d,), "ones"), (f"{prefix}.bias", (d,), "zeros")])

    norm("emb_ln")
    for i in range(cfg["layers"]):
        for m in "qkvo":
            linear(f"layers.{i}.attn.{m}", d, d)
        norm(f"layers.{i}.ln1")
        linear(f"layers.{i}.fc1", ff, d)
        linear(f"layers.{i}.fc2", d, ff)
        norm(f"layers.{i}.ln2")
    if r > 0:
        for lang in cfg["languages"]:
            for i in range(cfg["layers"]):
                for kind in ("attn", "ffn"):
                    linear(f"adapters.{lang}.{i}.{kind}.down", r, d)
                    linear(f"adapters.{lang}.{i}.{kind}.up", d, r, init="up")
    specs.append(("out_bias", (cfg["vocab_size"],), "zeros"))
    return specs


class MlmTwin(nn.Module):
    """The crate's post-LN transformer MLM. Parameters live in one ParameterList, reached by
    the crate's names through `self.p(name)` (a ParameterDict cannot hold dots)."""

    def __init__(self, cfg: dict, dtype=torch.float32, device="cpu", generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = check_config(cfg)
        specs = param_specs(self.cfg)
        self.names = [name for name, _, _ in specs]
        self.index = {name: i for i, name in enumerate(self.names)}
        values = []
        for _, shape, init in specs:
            if init in ("normal", "up"):
                std = INIT_STD if init == "normal" else ADAPTER_UP_STD
                t = torch.randn(shape, generator=generator, dtype=torch.float32) * std
            else:
                t = torch.ones(shape) if init == "ones" else torch.zeros(shape)
            values.append(nn.Parameter(t.to(device=device, dtype=dtype)))
        self.weights = nn.ParameterList(values)

    def p(self, name: str) -> torch.Tensor:
        return self.weights[self.index[name]]

    def named(self) -> dict[str, torch.Tensor]:
        """Parameters under the crate's names."""
        return {n: self.weights[i] for i, n in enumerate(self.names)}

    def load(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Copies values in by name; every parameter must be there with its shape."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise TwinError(f"{source}: parameter {missing[0]} is missing ({len(missing)} missing in all)")
        extra = [n for n in tensors if n not in self.index and not n.startswith("heads.")]
        if extra:
            raise TwinError(f"{source}: tensor {extra[0]} is not a parameter of the model")
        with torch.no_grad():
            for name in self.names:
                p, t = self.p(name), tensors[name]
                if tuple(t.shape) != tuple(p.shape):
                    raise TwinError(f"{source}: {name} has shape {list(t.shape)}, the config says {list(p.shape)}")
                p.copy_(t.to(dtype=p.dtype, device=p.device))

    # ---- forward -------------------------------------------------------------------------

    def _linear(self, x, prefix):
        return F.linear(x, self.p(f"{prefix}.weight"), self.p(f"{prefix}.bias"))

    def _ln(self, x, prefix):
        return F.layer_norm(x, x.shape[-1:], self.p(f"{prefix}.weight"), self.p(f"{prefix}.bias"), self.cfg["ln_eps"])

    def _adapter(self, h, prefix):
        """Bottleneck adapter with its own residual: h + up(gelu(down(h)))."""
        return h + self._linear(F.gelu(self._linear(h, f"{prefix}.down")), f"{prefix}.up")

    def _block(self, x, i, lang, mask):
        cfg = self.cfg
        b, s, d = x.shape
        h = cfg["heads"]
        dh = d // h
        pre = f"layers.{i}"

        def heads(t):  # [b, s, d] -> [b, h, s, dh]
            return t.reshape(b, s, h, dh).transpose(1, 2)

        q, k, v = (heads(self._linear(x, f"{pre}.attn.{m}")) for m in "qkv")
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
        if mask is not None:
            scores = scores + mask
        ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, s, d)  # no dropout on probs
        a = F.dropout(self._linear(ctx, f"{pre}.attn.o"), cfg["dropout"], self.training)
        if cfg["adapter_bottleneck"] > 0:
            a = self._adapter(a, f"adapters.{lang}.{i}.attn")
        x = self._ln(x + a, f"{pre}.ln1")
        f = self._linear(F.gelu(self._linear(x, f"{pre}.fc1")), f"{pre}.fc2")
        f = F.dropout(f, cfg["dropout"], self.training)
        if cfg["adapter_bottleneck"] > 0:
            f = self._adapter(f, f"adapters.{lang}.{i}.ffn")
        return self._ln(x + f, f"{pre}.ln2")

    def hidden(self, tokens: torch.Tensor, lang: str, pad: int | None = None) -> torch.Tensor:
        """Final hidden states [b, s, d] for tokens [b, s] of one language."""
        cfg = self.cfg
        b, s = tokens.shape
        if s > cfg["max_len"]:
            raise TwinError(f"sequence length {s} exceeds max_len {cfg['max_len']}")
        x = F.embedding(tokens, self.p("tok.weight")) + self.p("pos.weight")[:s]
        if cfg["lang_embeddings"]:
            x = x + self.p("lang.weight")[cfg["languages"].index(lang)]
        x = self._ln(x, "emb_ln")
        x = F.dropout(x, cfg["dropout"], self.training)
        mask = None
        if pad is not None:
            is_pad = tokens == pad
            if bool(is_pad.any()):  # as the crate: a mask only when the batch holds padding
                zero = torch.zeros((), dtype=x.dtype, device=x.device)
                mask = torch.where(is_pad, torch.full_like(zero, MASK_NEG), zero)[:, None, None, :]
        for i in range(cfg["layers"]):
            x = self._block(x, i, lang, mask)
        return x

    def logits(self, tokens, lang, positions, pad=None):
        """Logits [n, vocab] at flat positions (row * cols + col)."""
        h = self.hidden(tokens, lang, pad).reshape(-1, self.cfg["d_model"])
        return h[positions] @ self.p("tok.weight").t() + self.p("out_bias")

    def forward(self, tokens, lang, positions, targets, pad=None):
        """Mean MLM cross-entropy of targets at positions."""
        logits = self.logits(tokens, lang, positions, pad)
        if logits.dtype != torch.float64:
            logits = logits.float()
        return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------------------------
# grads
# --------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TwinError(f"device {name} asked for, but torch sees no CUDA device")
    if not (name == "cpu" or name.startswith("cuda")):
        raise TwinError(f"device must be cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def pad_from_tokenizer(path: Path) -> int:
    """The id of [PAD] in a tokenizers-crate tokenizer.json."""
    try:
        tok = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TwinError(f"{path}: cannot read the tokenizer: {e}") from None
    for added in tok.get("added_tokens") or []:
        if added.get("content") == "[PAD]":
            return int(added["id"])
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict) and "[PAD]" in vocab:
        return int(vocab["[PAD]"])
    raise TwinError(f"{path}: special token [PAD] is missing")


def default_pad(checkpoint: Path) -> int:
    """As `interference grads`: a tokenizer.json beside the checkpoint or in its parent, else 0."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "tokenizer.json").exists():
            return pad_from_tokenizer(folder / "tokenizer.json")
    return 0


def read_batch(path: Path, cfg: dict) -> dict:
    """Reads and checks a batch JSON: tokens [[..]], lang, positions [[r, c]], targets [..]."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TwinError(f"{path}: cannot read the batch: {e}") from None
    for key in ("tokens", "lang", "positions", "targets"):
        if key not in raw:
            raise TwinError(f"{path}: the batch has no {key!r}")
    rows = raw["tokens"]
    if not rows or not rows[0]:
        raise TwinError(f"{path}: batch has no tokens")
    cols = len(rows[0])
    for r, row in enumerate(rows):
        if len(row) != cols:
            raise TwinError(f"{path}: row {r} has {len(row)} tokens, row 0 has {cols}")
    if len(raw["positions"]) != len(raw["targets"]) or not raw["positions"]:
        raise TwinError(f"{path}: {len(raw['positions'])} positions but {len(raw['targets'])} targets (need the same, at least one)")
    vocab = cfg["vocab_size"]
    for t in [t for row in rows for t in row] + list(raw["targets"]):
        if not (isinstance(t, int) and 0 <= t < vocab):
            raise TwinError(f"{path}: token id {t} is outside the vocabulary of {vocab}")
    flat = []
    for r, c in raw["positions"]:
        if not (0 <= r < len(rows) and 0 <= c < cols):
            raise TwinError(f"{path}: position [{r}, {c}] is outside the {len(rows)}×{cols} batch")
        flat.append(r * cols + c)
    if raw["lang"] not in cfg["languages"]:
        raise TwinError(f"{path}: language {raw['lang']!r} is not one of the model's {cfg['languages']}")
    return {"tokens": rows, "lang": raw["lang"], "positions": flat, "targets": raw["targets"]}


def cmd_grads(args) -> None:
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    device = resolve_device(args.device)
    ckpt = Path(args.checkpoint)
    tensors, meta = read_safetensors(ckpt)
    if "config" not in meta:
        raise TwinError(f"{ckpt}: no model config in the safetensors metadata")
    cfg = json.loads(meta["config"])
    model = MlmTwin(cfg, dtype=dtype, device=device)
    model.load(tensors, str(ckpt))
    model.eval()  # dropout off
    batch = read_batch(Path(args.batch), model.cfg)
    pad = args.pad if args.pad is not None else (
        pad_from_tokenizer(Path(args.tokenizer)) if args.tokenizer else default_pad(ckpt))
    tokens = torch.tensor(batch["tokens"], dtype=torch.long, device=device)
    positions = torch.tensor(batch["positions"], dtype=torch.long, device=device)
    targets = torch.tensor(batch["targets"], dtype=torch.long, device=device)
    loss = model(tokens, batch["lang"], positions, targets, pad=pad)
    loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named().items()}
    write_safetensors(Path(args.out), grads, {"loss": repr(loss.item()), "impl": "pytorch", "dtype": args.dtype})
    print(f"loss {loss.item():.6f}; gradients of {len(grads)} parameters written to {args.out}")


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def cmd_compare(args) -> None:
    a, meta_a = read_safetensors(Path(args.a))
    b, meta_b = read_safetensors(Path(args.b))
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        which = f"{only_a[0]} is only in {args.a}" if only_a else f"{only_b[0]} is only in {args.b}"
        raise TwinError(f"the files hold different tensors: {which} ({len(only_a) + len(only_b)} unmatched)")
    rows = []
    for name in sorted(a):
        ta, tb = a[name].double(), b[name].double()
        if ta.shape != tb.shape:
            raise TwinError(f"{name} has shape {list(ta.shape)} in {args.a} and {list(tb.shape)} in {args.b}")
        rows.append((name, list(ta.shape), ta.norm().item(), tb.norm().item(), (ta - tb).norm().item()))
    top = max((max(na, nb) for _, _, na, nb, _ in rows), default=0.0)
    table = []
    for name, shape, na, nb, diff in rows:
        scale = max(na, nb)
        if scale < 1e-6 * top:  # an exact zero on one side (the key bias) or both: absolute
            kind, rel = "abs", (diff / top if top > 0 else diff)
        else:
            kind, rel = "rel", diff / scale
        table.append({"name": name, "shape": shape, "norm_a": na, "norm_b": nb, "diff": diff, "kind": kind, "rel": rel})

    width = max(len(r["name"]) for r in table) if table else 4
    print(f"{'tensor':<{width}}  {'|a|':>11} {'|b|':>11} {'|a-b|':>11} {'rel diff':>10}")
    for r in table:
        flag = " *" if r["rel"] > args.rtol else ""
        tag = " (abs/max|g|)" if r["kind"] == "abs" else ""
        print(f"{r['name']:<{width}}  {r['norm_a']:11.4e} {r['norm_b']:11.4e} {r['diff']:11.4e} {r['rel']:10.3e}{tag}{flag}")
    worst = max(table, key=lambda r: r["rel"]) if table else None
    loss = {}
    if "loss" in meta_a and "loss" in meta_b:
        la, lb = float(meta_a["loss"]), float(meta_b["loss"])
        loss = {"loss_a": la, "loss_b": lb, "loss_diff": abs(la - lb), "loss_rel": abs(la - lb) / max(abs(la), abs(lb), 1e-30)}
        print(f"loss: {la!r} vs {lb!r}, difference {loss['loss_diff']:.3e} (relative {loss['loss_rel']:.3e})")
    else:
        print("loss: not in both files' metadata")
    failing = [r["name"] for r in table if r["rel"] > args.rtol]
    if loss and loss["loss_rel"] > args.rtol:
        failing.append("loss")
    if worst:
        print(f"max relative difference {worst['rel']:.3e} ({worst['name']}) over {len(table)} tensors; rtol {args.rtol:g}: "
              + ("ok" if not failing else f"{len(failing)} over"))
    if args.json:
        out = {"tensors": table, "max_rel": worst["rel"] if worst else 0.0, "max_rel_tensor": worst["name"] if worst else None,
               "rtol": args.rtol, "failing": failing, **loss}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if failing:
        raise TwinError(f"{len(failing)} of {len(table)} tensors (or the loss) differ by more than rtol {args.rtol:g}: {', '.join(failing[:5])}")


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


def random_batches(args, langs: list[str], gen: torch.Generator):
    """One step's batches, as the crate's trainer: each row draws a language (uniformly here),
    rows of one language form one batch; 15% of positions are predicted (80% [MASK], 10%
    random, 10% kept). Token ids are >= 5 (no specials, no padding)."""
    lang_of_row = torch.randint(len(langs), (args.batch,), generator=gen) if len(langs) > 1 else torch.zeros(args.batch, dtype=torch.long)
    batches = []
    for li, lang in enumerate(langs):
        n = int((lang_of_row == li).sum())
        if n == 0:
            continue
        tokens = torch.randint(SPECIALS, args.vocab, (n, args.seq), generator=gen)
        chosen = torch.rand(n * args.seq, generator=gen) < 0.15
        if not chosen.any():
            chosen[0] = True
        positions = chosen.nonzero().squeeze(1)
        targets = tokens.reshape(-1)[positions].clone()
        u = torch.rand(len(positions), generator=gen)
        inputs = tokens.reshape(-1).clone()
        inputs[positions[u < 0.8]] = MASK_ID
        rand = positions[(u >= 0.8) & (u < 0.9)]
        inputs[rand] = torch.randint(SPECIALS, args.vocab, (len(rand),), generator=gen)
        batches.append((lang, inputs.reshape(n, args.seq), positions, targets))
    return batches


def cmd_bench(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.steps < 1 or args.langs < 1 or args.batch < 1 or args.seq < 1:
        raise TwinError("--steps, --langs, --batch and --seq must be at least 1")
    if args.vocab <= SPECIALS:
        raise TwinError(f"--vocab must exceed the {SPECIALS} special ids, got {args.vocab}")
    langs = [f"l{i}" for i in range(args.langs)]
    cfg = {
        "vocab_size": args.vocab, "d_model": args.d, "layers": args.layers, "heads": args.heads,
        "d_ff": args.ffn, "max_len": args.seq, "dropout": 0.1, "lang_embeddings": False,
        "adapter_bottleneck": args.adapters, "languages": langs, "ln_eps": 1e-12,
    }
    gen = torch.Generator().manual_seed(args.seed)
    model = MlmTwin(cfg, device=device, generator=gen).train()
    params = list(model.weights)
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=5e-4, betas=(0.9, 0.999), eps=1e-8)

    def step():
        batches = random_batches(args, langs, gen)
        total_targets = sum(len(t) for _, _, _, t in batches)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = sum(
                model(tok.to(device, non_blocking=True), lang, pos.to(device, non_blocking=True),
                      tgt.to(device, non_blocking=True)) * (len(tgt) / total_targets)
                for lang, tok, pos, tgt in batches)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    for _ in range(2):  # warm-up
        step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t) * 1000.0)
    if not math.isfinite(loss.item()):
        raise TwinError(f"the loss became {loss.item()} during the benchmark")
    ms = statistics.median(times)
    out = {
        "bench": "train_step", "impl": "pytorch", "device": args.device, "dtype": args.dtype,
        "config": {"d": args.d, "layers": args.layers, "heads": args.heads, "seq": args.seq, "batch": args.batch, "adapters": args.adapters},
        "tokens_per_s": round(args.batch * args.seq / (ms / 1000.0), 1),
        "ms_per_step": round(ms, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
    }
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        c = out["config"]
        gpu = f", peak GPU {out['peak_gpu_mb']} MB" if cuda else ""
        print(f"pytorch {args.device} {args.dtype} d{c['d']} L{c['layers']} h{c['heads']} seq{c['seq']} b{c['batch']} "
              f"adapters {c['adapters']} langs {args.langs} ({out['threads']} threads): {out['ms_per_step']} ms/step, "
              f"{out['tokens_per_s']} tokens/s, peak RSS {out['peak_rss_mb']} MB{gpu} (median of {args.steps})")


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PyTorch twin of the interference MLM: gradients, comparison, benchmark.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grads", help="loss and every parameter's gradient of one batch (dropout off)")
    g.add_argument("--checkpoint", required=True, help="weights (safetensors with the config in its metadata)")
    g.add_argument("--batch", required=True, help='{"tokens": [[..]], "lang": "en", "positions": [[r, c]], "targets": [..]}')
    g.add_argument("--out", required=True, help="gradients file (safetensors, loss in the metadata key 'loss')")
    g.add_argument("--pad", type=int, default=None, help="padding id (default: [PAD] of a tokenizer.json beside the checkpoint or in its parent, else 0)")
    g.add_argument("--tokenizer", default=None, help="a tokenizer.json whose [PAD] id marks padding")
    g.add_argument("--device", default="cpu")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    g.set_defaults(run=cmd_grads)

    c = sub.add_parser("compare", help="per-tensor relative L2 difference of two gradient files")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--rtol", type=float, default=1e-3)
    c.add_argument("--json", default=None, help="also write the table as JSON here")
    c.set_defaults(run=cmd_compare)

    b = sub.add_parser("bench", help="training-step throughput (AdamW, clipping, dropout 0.1, eager)")
    for flag, default in [("d", 256), ("layers", 4), ("heads", 4), ("ffn", 1024), ("vocab", 8000), ("seq", 128),
                          ("batch", 32), ("adapters", 0), ("langs", 1), ("steps", 10), ("threads", 0), ("seed", 0)]:
        b.add_argument(f"--{flag}", type=int, default=default)
    b.add_argument("--device", default="cpu")
    b.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    b.add_argument("--json", action="store_true", help="one JSON line")
    b.set_defaults(run=cmd_bench)

    args = ap.parse_args(argv)
    try:
        args.run(args)
    except TwinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
