"""One-shot structured pruning: unit scores by a criterion on calibration data (scores.py), and which units or
layers a target keeps (select.py). The stage is stages/prune.py."""
