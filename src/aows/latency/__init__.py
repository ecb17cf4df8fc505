"""The black-box latency model (the paper's Section 4; seed section A)."""
