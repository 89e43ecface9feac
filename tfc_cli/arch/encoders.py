"""Post-norm encoder families: BERT-like (BERT, MiniLM, RoBERTa, XLM-R), DistilBERT and MPNet.

Each layer is x -> LN(x + attention(x)) -> LN(. + FFN(.)), and the embeddings' sum is normalised too. A removed
sublayer takes its LayerNorm with it: the residual passes unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from .family import Family, Slot, family_error


class SkippedAttention(nn.Module):
    """A removed attention sublayer: the layer's input passes unchanged."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states, None


class SkippedOutput(nn.Module):
    """A removed FFN sublayer (BERT's output module; the intermediate becomes Identity): the residual passes."""

    def forward(self, hidden_states, input_tensor):
        return input_tensor


class ZeroOutput(nn.Module):
    """A removed DistilBERT sublayer: outputs zeros, and its LayerNorm becomes Identity, so x + 0 passes."""

    def forward(self, hidden_states, *args, **kwargs):
        zeros = torch.zeros_like(hidden_states)
        return zeros if not kwargs and not args else (zeros, None)


class BertLike(Family):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta")
    pre_norm = False
    config_sizes = {"ffn": "intermediate_size"}  # the head dim is hidden / heads: fewer heads cannot be stated

    def __init__(self, model):
        super().__init__(model)
        if not hasattr(self.base, "encoder") or not hasattr(self.base, "embeddings"):
            raise family_error(model, "expected a BERT-style encoder (embeddings + encoder.layer)")

    def layer_list(self):
        return self.base.encoder, "layer"

    def attention_linears(self, layer):
        if isinstance(layer.attention, SkippedAttention):
            return None
        s = layer.attention.self
        return s.query, s.key, s.value, layer.attention.output.dense

    def ffn_linears(self, layer):
        if isinstance(layer.output, SkippedOutput):
            return None
        return layer.intermediate.dense, None, layer.output.dense

    def sublayer_norms(self, layer):
        attention_gone, ffn_gone = isinstance(layer.attention, SkippedAttention), isinstance(layer.output, SkippedOutput)
        return {"mha": [] if attention_gone else [(self._attention_norm_owner(layer), "LayerNorm")],
                "ffn": [] if ffn_gone else [(layer.output, "LayerNorm")]}

    @staticmethod
    def _attention_norm_owner(layer) -> nn.Module:
        return layer.attention.output

    def remove_attention(self, layer):
        layer.attention = SkippedAttention()

    def remove_ffn(self, layer):
        layer.intermediate, layer.output = nn.Identity(), SkippedOutput()

    def set_heads(self, layer, kept_heads):
        s = layer.attention.self
        s.num_attention_heads, s.all_head_size = len(kept_heads), len(kept_heads) * self.head_dim()

    def embedding_tables(self):
        e = self.base.embeddings
        return [t for t in (e.word_embeddings, e.position_embeddings, getattr(e, "token_type_embeddings", None))
                if t is not None]

    def embedding_norm(self) -> Slot:
        return self.base.embeddings, "LayerNorm"

    def head_linears(self):
        if getattr(self.base, "pooler", None) is not None:
            return [self.base.pooler.dense]
        classifier = getattr(self.model, "classifier", None)
        if isinstance(getattr(classifier, "dense", None), nn.Linear):
            return [classifier.dense]
        raise family_error(self.model, "no pooler or classifier.dense reads the hidden states; hidden-dim pruning "
                           "does not know this head")


class DistilBert(Family):
    name = "distilbert"
    model_types = ("distilbert",)
    pre_norm = False
    config_sizes = {"ffn": "hidden_dim"}

    def layer_list(self):
        return self.base.transformer, "layer"

    def head_dim(self):
        return self.config.dim // self.config.n_heads

    def group_size(self):
        return 1

    def attention_linears(self, layer):
        a = layer.attention
        return None if isinstance(a, ZeroOutput) else (a.q_lin, a.k_lin, a.v_lin, a.out_lin)

    def ffn_linears(self, layer):
        return None if isinstance(layer.ffn, ZeroOutput) else (layer.ffn.lin1, None, layer.ffn.lin2)

    def sublayer_norms(self, layer):
        return {"mha": [] if isinstance(layer.attention, ZeroOutput) else [(layer, "sa_layer_norm")],
                "ffn": [] if isinstance(layer.ffn, ZeroOutput) else [(layer, "output_layer_norm")]}

    def remove_attention(self, layer):
        layer.attention, layer.sa_layer_norm = ZeroOutput(), nn.Identity()

    def remove_ffn(self, layer):
        layer.ffn, layer.output_layer_norm = ZeroOutput(), nn.Identity()

    def set_heads(self, layer, kept_heads):
        layer.attention.n_heads = len(kept_heads)

    def embedding_tables(self):
        e = self.base.embeddings
        return [e.word_embeddings, e.position_embeddings]

    def embedding_norm(self):
        return self.base.embeddings, "LayerNorm"

    def head_linears(self):
        return [self.model.pre_classifier]


class MPNet(BertLike):
    """BERT's layout, with q/k/v/o in one module, the attention LayerNorm beside it, and a relative position bias
    shared by all layers."""
    name = "mpnet"
    model_types = ("mpnet",)
    config_sizes = {"ffn": "intermediate_size"}  # kept heads index the shared position bias: not in the config

    def attention_linears(self, layer):
        if isinstance(layer.attention, SkippedAttention):
            return None
        a = layer.attention.attn
        return a.q, a.k, a.v, a.o

    @staticmethod
    def _attention_norm_owner(layer) -> nn.Module:
        return layer.attention

    def set_heads(self, layer, kept_heads):
        a = layer.attention.attn
        a.num_attention_heads, a.all_head_size = len(kept_heads), len(kept_heads) * self.head_dim()
        # the relative position bias is computed once for all heads of the original model; each layer reads the
        # channels of the heads it kept
        kept = torch.tensor(kept_heads, device=a.q.weight.device)
        if hasattr(a, "tfc_kept_heads"):  # pruned again: index into the original heads
            kept = a.tfc_kept_heads[kept]
        else:
            a.register_forward_pre_hook(_bias_heads)
        a.register_buffer("tfc_kept_heads", kept, persistent=False)


def _bias_heads(module: nn.Module, args: tuple) -> tuple:
    hidden, mask, bias, *rest = args
    return (hidden, mask, None if bias is None else bias[:, module.tfc_kept_heads], *rest)
