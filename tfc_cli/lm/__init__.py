"""Causal language models: text data, perplexity, runners (torch and ONNX Runtime with a KV cache), generation bench."""
