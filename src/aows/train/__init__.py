"""Supernet training (the paper's OWS and AOWS; seed section B) and fine-tuning: the loop
(``loop``), the temperature schedule, unary statistics, the AOWS sampler, data and the
runtime shared by both loops (processes, checkpoints, stop signals)."""
