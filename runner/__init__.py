"""The companion pretraining runner: pull PriorForge exports, mix them with a base corpus at
token ratios, pretrain a small decoder-only transformer with an exact-resume sample order,
and serve checkpoints for the propensity evaluation. Needs the ``train`` extra (PyTorch)."""
