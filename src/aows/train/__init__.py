"""Supernet training (the paper's OWS and AOWS; the AOWS supplementary, section B) and
fine-tuning: one training harness (``harness``: device, AMP, DDP, checkpoints, the epoch
loop, resuming, stop requests) with the supernet's step and records (``loop``) and fine-tuning's
(``finetune``) on it; the temperature schedule, unary statistics, the AOWS sampler, data
and the runtime helpers (processes, checkpoints, stop signals)."""
