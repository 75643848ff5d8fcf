"""Model cases: the anchor file's models, built from configs with random weights (no downloads).

Full size (GPU): transformers GPT-2 (8x512 tokens; `gpt2-kv` is transformers' default config,
which also returns every layer's keys and values, and is the anchor file's GPT-2; `gpt2`, in the
`variants` group that runs only when named, returns the logits alone), BERT-base (16x512), a Llama-style model
(hidden 2048, intermediate 5632, 8 layers, 16 heads, 4 KV heads; 4x1024), timm
vit_base_patch16_224, torchvision resnet50 and timm convnext_tiny (64x3x224x224), plus one GPT-2
forward+backward training step. Smoke size (CPU): the same architectures shrunk to a few
thousand parameters so the Triton interpreter gets through them in seconds.

Names match the anchor file's "model" field, so anchors.py can line them up.
"""
from __future__ import annotations

import importlib.util

import torch

from .workload import Case, Config, Skip, Workload

SMOKE_VOCAB = 128

def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} is not installed")


def _finish(model: torch.nn.Module, cfg: Config, train: bool = False) -> torch.nn.Module:
    model = model.to(cfg.dtype)
    return model.train() if train else model.eval()


def _tokens(cfg: Config, name: str, batch: int, seq: int, vocab: int) -> tuple[torch.Tensor, str]:
    b = cfg.batch_for(name, batch)
    return torch.randint(0, vocab, (b, seq), device=cfg.device), f"{b}x{seq} tokens"


# ---- transformers --------------------------------------------------------------------------

def _gpt2_config(cfg: Config):
    from transformers import GPT2Config
    # Dropout off: the training step must be deterministic to compare gradients with eager
    # (inference is unaffected, eval() disables dropout anyway).
    common = dict(use_cache=False, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    if cfg.smoke:
        return GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=SMOKE_VOCAB, n_positions=64,
                          bos_token_id=0, eos_token_id=0, **common)
    return GPT2Config(**common)  # GPT-2 small: 12 layers, 768 hidden, 50257 vocab


def _gpt2_lm(cfg: Config, name: str, use_cache: bool = False, train: bool = False):
    """(GPT2LMHeadModel, token ids, shape text) for one GPT-2 case."""
    _need("transformers")
    from transformers import GPT2LMHeadModel
    conf = _gpt2_config(cfg)
    conf.use_cache = use_cache
    with torch.device(cfg.device):
        model = _finish(GPT2LMHeadModel(conf), cfg, train=train)
    ids, shape = _tokens(cfg, name, 2 if cfg.smoke else 8, 8 if cfg.smoke else 512, conf.vocab_size)
    return model, ids, shape


def gpt2(cfg: Config) -> Workload:
    model, ids, shape = _gpt2_lm(cfg, "gpt2")
    return Workload(model, (), {"input_ids": ids}, pick=lambda o: [("logits", o.logits)],
                    kind="model", shape=shape, dtype=cfg.dtype)


def gpt2_kv(cfg: Config) -> Workload:
    """GPT-2 with transformers' default config, which returns the attention's keys and values
    (use_cache=True: the prefill of a generation). The anchor file's GPT-2 figures are this
    configuration's (H100 at 2f25d7f: TorchInductor 3.33 ms here against the anchor's 3.64,
    2.7-2.8 for the `gpt2` case, which returns only the logits)."""
    model, ids, shape = _gpt2_lm(cfg, "gpt2-kv", use_cache=True)

    def pick(o):
        layers = o.past_key_values.layers
        return [("logits", o.logits)] + [(f"{kind}{i}", getattr(layer, kind))
                                         for i, layer in enumerate(layers) for kind in ("keys", "values")]
    return Workload(model, (), {"input_ids": ids}, pick=pick, kind="model", shape=shape + ", keys and values out",
                    dtype=cfg.dtype)


def gpt2_train(cfg: Config) -> Workload:
    """One forward+backward step (loss = LM cross-entropy on the inputs); no optimizer step, so the
    parameters stay the same for every backend."""
    model, ids, shape = _gpt2_lm(cfg, "gpt2-train", train=True)
    return Workload(model, (), {"input_ids": ids, "labels": ids}, pick=lambda o: o.loss, train=True,
                    kind="train", shape=shape + ", fwd+bwd", dtype=cfg.dtype)


def bert(cfg: Config) -> Workload:
    _need("transformers")
    from transformers import BertConfig, BertModel
    if cfg.smoke:
        conf = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          vocab_size=SMOKE_VOCAB, max_position_embeddings=64)
    else:
        conf = BertConfig()  # bert-base-uncased sizes: 12 layers, 768 hidden, 30522 vocab
    with torch.device(cfg.device):
        model = _finish(BertModel(conf), cfg)
    ids, shape = _tokens(cfg, "bert-base", 2 if cfg.smoke else 16, 8 if cfg.smoke else 512, conf.vocab_size)
    pick = lambda o: [("last_hidden_state", o.last_hidden_state), ("pooler_output", o.pooler_output)]  # noqa: E731
    return Workload(model, (), {"input_ids": ids}, pick=pick, kind="model", shape=shape, dtype=cfg.dtype)


def llama(cfg: Config) -> Workload:
    _need("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM
    if cfg.smoke:
        conf = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=SMOKE_VOCAB, max_position_embeddings=64,
                           use_cache=False)
    else:
        conf = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=16,
                           num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
                           use_cache=False)
    with torch.device(cfg.device):
        model = _finish(LlamaForCausalLM(conf), cfg)
    ids, shape = _tokens(cfg, "llama-1b-ish", 2 if cfg.smoke else 4, 8 if cfg.smoke else 1024, conf.vocab_size)
    return Workload(model, (), {"input_ids": ids}, pick=lambda o: [("logits", o.logits)],
                    kind="model", shape=shape, dtype=cfg.dtype)


# ---- vision --------------------------------------------------------------------------------

def _images(cfg: Config, name: str, model: torch.nn.Module, size: int) -> Workload:
    b = cfg.batch_for(name, 2 if cfg.smoke else 64)
    x = torch.randn(b, 3, size, size, device=cfg.device, dtype=cfg.dtype)
    return Workload(model, (x,), pick=lambda o: [("logits", o)], kind="model",
                    shape=f"{b}x3x{size}x{size}", dtype=cfg.dtype)


def vit(cfg: Config) -> Workload:
    _need("timm")
    import timm
    small = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10) if cfg.smoke else {}
    with torch.device(cfg.device):
        model = _finish(timm.create_model("vit_base_patch16_224", pretrained=False, **small), cfg)
    return _images(cfg, "vit_base_patch16_224", model, 32 if cfg.smoke else 224)


def resnet50(cfg: Config) -> Workload:
    _need("torchvision")
    import torchvision
    with torch.device(cfg.device):
        if cfg.smoke:  # resnet50's bottleneck blocks, one per stage, narrow
            from torchvision.models.resnet import Bottleneck, ResNet
            model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, width_per_group=8)
        else:
            model = torchvision.models.resnet50(weights=None)
        model = _finish(model, cfg)
    return _images(cfg, "resnet50", model, 32 if cfg.smoke else 224)


def convnext(cfg: Config) -> Workload:
    _need("timm")
    import timm
    small = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=10) if cfg.smoke else {}
    with torch.device(cfg.device):
        model = _finish(timm.create_model("convnext_tiny", pretrained=False, **small), cfg)
    return _images(cfg, "convnext_tiny", model, 32 if cfg.smoke else 224)


CASES = [
    Case("gpt2", "variants", gpt2),
    Case("gpt2-kv", "models", gpt2_kv),
    Case("bert-base", "models", bert),
    Case("llama-1b-ish", "models", llama),
    Case("vit_base_patch16_224", "models", vit),
    Case("resnet50", "models", resnet50),
    Case("convnext_tiny", "models", convnext),
    Case("gpt2-train", "train", gpt2_train),
]
