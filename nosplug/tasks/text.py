"""A character-level language model on a text corpus that ships with Python itself.

The corpus is ``pydoc_data.topics``: the English help texts of Python's ``help()`` (keywords,
statements, data model, ...), part of every CPython installation, so nothing is downloaded.
Its topics are joined in key order; characters outside printable ASCII (plus newline and tab)
become one unknown symbol. The encoded text is cut into non-overlapping windows of
``context + 1`` characters; the first 80 % of windows train, the next 10 % validate, the last
10 % test (a contiguous split, so no test text leaks into training through overlapping windows).

The model is a small pre-norm causal Transformer written with plain tensor ops, so
``torch.func.vmap`` can batch several copies in the learning-rate sweep. Fitness is validation
perplexity (lower is better); gates compare the training loss with the untrained model's
(relative gates).
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nosplug.tasks.base import LOSS, MINIMIZE, RELATIVE_LOSS_GATES, Metric, Split, Task, TaskData

#: The characters of the vocabulary; index len(VOCAB) is the unknown symbol.
VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))
PERPLEXITY = Metric("perplexity", MINIMIZE)


@cache
def corpus_text() -> str:
    """The corpus: Python's help topics joined in key order (about 465 000 characters)."""
    from pydoc_data import topics

    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


def corpus_sha256() -> str:
    """Checksum of the corpus text (pinned by a test for the Python version CI runs)."""
    return hashlib.sha256(corpus_text().encode()).hexdigest()


@cache
def encoded_corpus() -> Tensor:
    index = {c: i for i, c in enumerate(VOCAB)}
    unknown = len(VOCAB)
    return torch.tensor([index.get(c, unknown) for c in corpus_text()], dtype=torch.long)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        shape = (b, t, self.heads, d // self.heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        # written out rather than scaled_dot_product_attention: torch.func.vmap has no batching
        # rule for its CPU kernel, and at a context of 64 the plain form is as fast
        att = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        y = att.masked_fill(causal, float("-inf")).softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Token + position embeddings, ``layers`` pre-norm blocks, a final norm and a linear head."""

    def __init__(self, vocab: int, context: int, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.zeros(context, dim))
        nn.init.normal_(self.positions, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tokens(idx) + self.positions[: idx.shape[-1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class CharLMTask(Task):
    """Next-character prediction on Python's help texts; fitness: validation perplexity."""

    metric = PERPLEXITY
    train_metric = LOSS
    gates = RELATIVE_LOSS_GATES
    budget: ClassVar[dict[str, Any]] = {
        "batch_size": 32,
        "sweep_steps": 150,
        "sweep_epoch_steps": 50,
        "final_steps": 600,
        "final_epoch_steps": 100,
        "schedule_steps": 1200,
        "warmup_steps": 60,
    }

    def __init__(
        self, context: int = 64, dim: int = 64, heads: int = 4, layers: int = 2, name: str = "charlm"
    ) -> None:
        if dim % heads:
            raise ValueError(f"charlm: dim {dim} is not a multiple of heads {heads}")
        self.context, self.dim, self.heads, self.layers = int(context), int(dim), int(heads), int(layers)
        self.name = name
        self.description = (
            f"character-level Transformer ({layers}x{dim}, context {context}) on Python's help texts"
        )
        self.options = {"context": context, "dim": dim, "heads": heads, "layers": layers}

    def load(self, seed: int) -> TaskData:
        """Windows of the corpus; the split is fixed (contiguous), ``seed`` does not change it."""
        data = encoded_corpus()
        n = len(data) // (self.context + 1)
        windows = data[: n * (self.context + 1)].reshape(n, self.context + 1)
        a, b = int(0.8 * n), int(0.9 * n)

        def split(w: Tensor) -> Split:
            return Split(w[:, :-1].contiguous(), w[:, 1:].contiguous())

        return TaskData(
            split(windows[:a]),
            split(windows[a:b]),
            split(windows[b:]),
            {"vocab": len(VOCAB) + 1, "characters": len(data), "windows": n, "sha256": corpus_sha256()},
        )

    def build_model(self, seed: int) -> nn.Module:
        return TinyTransformer(len(VOCAB) + 1, self.context, self.dim, self.heads, self.layers)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1))

    def evaluate(self, model: nn.Module, split: Split, chunk: int = 256) -> float:
        """Perplexity: exp of the mean per-character negative log-likelihood over the split."""
        if not len(split):
            return math.nan

        def nll(out: Tensor, y: Tensor) -> Tensor:
            return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="sum")

        mean = self.loss_sum(model, split, nll, chunk) / split.y.numel()
        return math.exp(mean) if mean < 709.0 else math.inf  # past exp's float range: a diverged model
