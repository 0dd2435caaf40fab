"""A small decoder-only transformer (GPT-2 shape): the model the runner pretrains.

Learned positions, pre-LayerNorm blocks, causal attention through PyTorch's fused kernel,
a GELU MLP, and the output layer tied to the token embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    seq_len: int = 256
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def parameters(self) -> int:
        """Parameters, the tied output layer counted once."""
        d, layers = self.d_model, self.n_layer
        block = 12 * d * d + 13 * d  # attention 4d² + 4d, MLP 8d² + 5d, two LayerNorms 4d
        return self.vocab_size * d + self.seq_len * d + layers * block + 2 * d

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per parameter (forward and backward) plus attention's
        12·layers·d·seq_len (PaLM, appendix B), embeddings excluded as they do no matmul."""
        matmul = self.parameters() - self.vocab_size * self.d_model - self.seq_len * self.d_model
        # The tied output layer does a matmul: count it.
        matmul += self.vocab_size * self.d_model
        return 6 * matmul + 12 * self.n_layer * self.d_model * self.seq_len


# Presets from a test model to one that fills a GPU (GPT-2 small's shape).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 4, "d_model": 96, "seq_len": 128},  # ~1M with 4k vocab
    "mini": {"n_layer": 4, "n_head": 4, "d_model": 192, "seq_len": 256},
    "small": {"n_layer": 6, "n_head": 8, "d_model": 384, "seq_len": 512},
    "125m": {"n_layer": 12, "n_head": 12, "d_model": 768, "seq_len": 1024},
}


def preset(name: str, vocab_size: int, **overrides: int | float) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: use one of {', '.join(PRESETS)}")
    return ModelConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides})  # type: ignore[arg-type]


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.d_model % config.n_head:
            raise ValueError(
                f"d_model {config.d_model} is not a multiple of n_head {config.n_head}"
            )
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.n_head, width // self.n_head)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        projected: Tensor = self.proj(out.transpose(1, 2).contiguous().view(batch, length, width))
        return projected


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.out = nn.Linear(4 * config.d_model, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        mixed: Tensor = x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))
        return mixed


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.seq_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.apply(self._init)
        # Residual outputs scaled down with depth (GPT-2): the stream's variance stays put.
        for name, parameter in self.named_parameters():
            if name.endswith(("attn.proj.weight", "out.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        """Logits for every position of ``idx`` (batch × length ≤ seq_len)."""
        length = idx.shape[1]
        if length > self.config.seq_len:
            raise ValueError(f"{length} tokens exceed the model's context {self.config.seq_len}")
        positions = torch.arange(length, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
