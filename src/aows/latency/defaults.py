"""Defaults of the latency model's fit and refinement, in a module of their own so that
the command line and the run configuration read them without importing scipy (the
parser is built in 0.2 s instead of 0.6 s)."""

DEFAULT_K = 100.0  # the monotonicity prior's weight (the paper's Eq. 7)
DEFAULT_SMOOTH = 1.0  # the smoothness prior's weight (chosen in benchmarks/latency_model.py)
DEFAULT_RIDGE = 1e-4  # the pull toward the FLOPs-shaped tables (see fit.solve)
# the sampler of `aows latency generate` and `aows run`: biased until every layer width
# pair is timed once, then uniform (benchmarks/latency_bias.py: at 500 networks 3.62 %
# held-out NRMSE and -0.12 % bias, against 4.17 % and -1.68 % for biased sampling alone)
DEFAULT_SAMPLER = "cover"
DEFAULT_ROUNDS = 3  # refinement: timing rounds at most
DEFAULT_BUDGETS = 10  # refinement: budgets whose picks are timed
# `aows latency fit` warns when the fitted model misses a timed end of the range (the
# widest or narrowest network) or its own timings by more than this, or predicts a wider
# network more than FIT_ORDER_SLACK faster than a narrower one
FIT_TOLERANCE = 0.10
FIT_ORDER_SLACK = 0.01
# networks to time at least when a fit is not to be trusted: from 200 networks up the fits
# of MobileNet-v1 measured here were within 4 % held-out NRMSE (docs/latency.md)
FIT_NETWORKS = 200

# --remote: seconds one answer of a remote target may take before it counts as hung (a
# TensorRT engine build of one network can take minutes on a Jetson), and times a chunk
# is retried on a fresh connection
REMOTE_TIMEOUT = 600.0
REMOTE_RETRIES = 2
