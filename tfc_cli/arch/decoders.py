"""Pre-norm decoder families: Llama-like (Llama, SmolLM2, Mistral, Qwen2) and Gemma 3 (its extra norms around each
sublayer). Grouped-query attention is pruned a whole key/value group at a time; the gated FFN's gate and up rows go
together. A removed sublayer adds nothing to the residual stream (ZeroAttention keeps the KV cache's length).
"""
from __future__ import annotations

from torch import nn

from .family import Family, ZeroAttention, ZeroFfn, family_error


class LlamaLike(Family):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    pre_norm = True
    gated_ffn = True
    classified_token = "last"
    config_sizes = {"ffn": "intermediate_size", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads",
                    "hidden": "hidden_size"}  # head_dim is its own config field
    attention_norms = ("input_layernorm",)  # the norms that exist only for that sublayer
    ffn_norms = ("post_attention_layernorm",)

    def __init__(self, model):
        super().__init__(model)
        if not hasattr(self.base, "layers") or not hasattr(self.base, "embed_tokens"):
            raise family_error(model, "expected a decoder with embed_tokens and layers")

    def layer_list(self):
        return self.base, "layers"

    def attention_linears(self, layer):
        a = layer.self_attn
        return None if isinstance(a, ZeroAttention) else (a.q_proj, a.k_proj, a.v_proj, a.o_proj)

    def ffn_linears(self, layer):
        m = layer.mlp
        return None if isinstance(m, ZeroFfn) else (m.up_proj, m.gate_proj, m.down_proj)

    def sublayer_norms(self, layer):
        alive = lambda names: [(layer, n) for n in names if not isinstance(getattr(layer, n), nn.Identity)]  # noqa: E731
        return {"mha": alive(self.attention_norms), "ffn": alive(self.ffn_norms)}

    def remove_attention(self, layer):
        layer.self_attn = ZeroAttention(layer.self_attn.layer_idx, self.head_dim())
        for name in self.attention_norms:
            setattr(layer, name, nn.Identity())

    def remove_ffn(self, layer):
        layer.mlp = ZeroFfn()
        for name in self.ffn_norms:
            setattr(layer, name, nn.Identity())

    def embedding_tables(self):
        return [self.base.embed_tokens]

    def final_norms(self):
        return [(self.base, "norm")]

    def head_linears(self):
        return [self.model.lm_head]

    def head_tied(self):
        return self.model.lm_head.weight is self.base.embed_tokens.weight


class Gemma3(LlamaLike):
    name = "gemma3"
    model_types = ("gemma3_text",)
    # the embeddings are scaled by sqrt(hidden_size) from the config: a smaller hidden size would change them
    config_sizes = {k: v for k, v in LlamaLike.config_sizes.items() if k != "hidden"}
    attention_norms = ("input_layernorm", "post_attention_layernorm")
    ffn_norms = ("pre_feedforward_layernorm", "post_feedforward_layernorm")
