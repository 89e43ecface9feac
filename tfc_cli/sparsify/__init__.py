"""Unstructured and N:M sparsity: masks, calibration statistics, SparseGPT."""
