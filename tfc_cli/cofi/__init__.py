"""CoFi structured pruning (Xia, Zhong & Chen, ACL 2022, https://arxiv.org/abs/2204.00408): L0 gates at five
granularities and a Lagrangian sparsity constraint (gates.py), the final sparsity correction (target.py) and the
phases of a run (run.py); the losses are in distill.py, the family surgery in arch/."""
