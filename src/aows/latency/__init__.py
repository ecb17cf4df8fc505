"""The black-box latency model (method.md section 1)."""
