"""Tiny models of every family tfc prunes, built from config with odd sizes (no download)."""
from __future__ import annotations

import torch

# model_type -> config kwargs: 3 layers, 3 heads (GQA: 6 query heads over 3 KV groups), head dim 6, 22 FFN units
ENCODER = dict(hidden_size=18, num_hidden_layers=3, num_attention_heads=3, intermediate_size=22, vocab_size=99,
               max_position_embeddings=64)
DECODER = dict(hidden_size=30, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=3, head_dim=6,
               intermediate_size=22, vocab_size=99, max_position_embeddings=64, tie_word_embeddings=True)
CONFIGS = {
    "bert": ENCODER,
    "roberta": ENCODER | dict(pad_token_id=1),
    "distilbert": dict(dim=18, n_layers=3, n_heads=3, hidden_dim=22, vocab_size=99, max_position_embeddings=64),
    "mpnet": ENCODER | dict(pad_token_id=1),
    "llama": DECODER,
    "qwen2": DECODER | dict(tie_word_embeddings=False, vocab_size=100),  # its tokenizer class adds <|endoftext|>
    "gemma3_text": DECODER | dict(query_pre_attn_scalar=6, sliding_window=8, pad_token_id=0),
}
DECODERS = ("llama", "qwen2", "gemma3_text")


def make_family_folder(folder, model_type: str):
    """A tiny model of `model_type` with tfc's tiny word tokenizer, saved as a plain HF folder."""
    from tests.conftest import make_tokenizer

    model = tiny_model(model_type)
    model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id = 0, 2, 3
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def tiny_model(model_type: str, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **CONFIGS[model_type])
    if model_type in DECODERS:
        return AutoModelForCausalLM.from_config(config).eval()
    config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    return AutoModelForSequenceClassification.from_config(config).eval()


def tiny_batch(model_type: str, batch: int = 2, length: int = 7) -> dict:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (batch, length), generator=generator)
    if model_type in DECODERS:
        return {"input_ids": ids}
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # padding
    return {"input_ids": ids, "attention_mask": mask}
