"""Defaults of the latency model's fit and refinement, in a module of their own so that
the command line and the run configuration read them without importing scipy (the
parser is built in 0.2 s instead of 0.6 s)."""

DEFAULT_K = 100.0  # the monotonicity prior's weight (the paper's Eq. 7)
DEFAULT_SMOOTH = 1.0  # the smoothness prior's weight (chosen in benchmarks/latency_model.py)
DEFAULT_RIDGE = 1e-4  # the pull toward the FLOPs-shaped tables (see fit.solve)
DEFAULT_ROUNDS = 3  # refinement: timing rounds at most
DEFAULT_BUDGETS = 10  # refinement: budgets whose picks are timed
