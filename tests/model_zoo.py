"""Tiny transformers models built from configs (random weights, nothing downloaded)."""
import torch

VOCAB = 128


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=64,
                     attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, use_cache=False)
    return GPT2LMHeadModel(cfg)


def bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=VOCAB, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertModel(cfg)


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64, use_cache=False)
    return LlamaForCausalLM(cfg)


MODELS = {"gpt2": gpt2, "bert": bert, "llama": llama}


def outputs_of(model_name: str, out):
    """The tensors to compare: logits for LMs, hidden states + pooler for BERT."""
    if model_name == "bert":
        return out.last_hidden_state, out.pooler_output
    return (out.logits,)


def token_ids(batch: int, seq: int, device="cpu"):
    return torch.randint(0, VOCAB, (batch, seq), device=device)
