"""The black-box latency model (the paper's Section 4; the AOWS supplementary, section A)."""
