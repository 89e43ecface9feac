"""CoFi structured pruning (Xia, Zhong & Chen, ACL 2022, https://arxiv.org/abs/2204.00408): L0 gates at five
granularities, a Lagrangian sparsity constraint, and layer-wise distillation."""
