"""Supernet training parts (method.md sections 2 and 3): the temperature schedule, unary
statistics and the AOWS sampler. The training loop itself is not built yet."""
