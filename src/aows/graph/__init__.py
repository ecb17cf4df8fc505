"""Width graphs: the chain solvers of ``aows.chain`` on pairwise MRFs of small treewidth.

AOWS scores a width configuration c with a pairwise MRF (the paper's OWS: unary scores
per width from the slimmable supernet, pairwise latency terms per layer) and decodes it
by dynamic programming; for a plain network the MRF is a chain. Residual networks tie
widths: the output width S of a stage is shared by every block of that stage, so the
decision graph is a hub with triangles (S - a - b - S for a bottleneck block with inner
widths a, b) rather than a chain. Its treewidth stays small (2 for ResNet-50), so the
same exact computations still run in polynomial time, by variable elimination:

- max-sum (the paper's Viterbi decode) with argmax back-tracking;
- log-space sum-product: marginals (bucket tree, up and down) and exact joint samples of
  p_T(c) ~ exp(score / T), the distribution AOWS samples from;
- the latency-constrained decode (OWS): the Lagrangian relaxation, walked exactly on
  the upper convex hull (``chain.LagrangianProblem``, shared with the chain), and the
  exact budgeted optimum with no duality gap: multi-objective bucket elimination, that
  is Pareto sets of (cost, score) labels per separator assignment, pruned by the budget
  and by Lagrangian bounds against an incumbent (the hull walk's answer, improved by
  greedy single-width moves);
- the exact Pareto front: the same elimination, pruned against known configurations
  (hull vertices and greedy ones) with Lagrangian bounds per cost range.

Elimination order: greedy min-fill (ties: min degree, then index). A variable's bucket
holds its own terms and its children's messages over its scope {v} U separator(v);
separators larger than ``MAX_WIDTH`` are refused with a ``GraphError`` (never solved
approximately here; a space made too wide by concatenations hands these solvers a graph
with some latency terms linearised, ``SearchSpace.linearised``, and its search says it
is not exact). Variables with one choice are folded into their neighbours' unaries.
Everything is numpy on dense bucket tables and flat label arrays; no torch, no I/O.
"""

from aows.graph.budget import GraphBudgetProblem
from aows.graph.labels import pareto_keep
from aows.graph.model import MAX_WIDTH, GraphError, WidthGraph

__all__ = ["MAX_WIDTH", "GraphBudgetProblem", "GraphError", "WidthGraph", "pareto_keep"]
