"""Every extension point is a registry of one shape: register, names, get, and an
unknown name is one clear error listing the known ones."""

from __future__ import annotations

import pytest

from aows.errors import AowsError
from aows.importance import CRITERIA
from aows.latency.backends import BACKENDS
from aows.nn.ops import OPS
from aows.registry import Registry
from aows.solve import SOLVERS, search
from aows.spaces import SPACES

REGISTRIES = {"space": SPACES, "op": OPS, "solver": SOLVERS, "backend": BACKENDS,
              "criterion": CRITERIA}


@pytest.mark.parametrize("name", list(REGISTRIES))
def test_one_shape(name):
    reg = REGISTRIES[name]
    assert isinstance(reg, Registry) and reg.names() == sorted(reg) and reg.names()
    first = reg.names()[0]
    assert reg.get(first) is reg[first]
    assert reg.get("no-such-name", None) is None
    with pytest.raises(AowsError, match=f"unknown {reg.kind} 'no-such-name'; known: "
                       f"{first}"):
        reg.get("no-such-name")


def test_register_as_call_and_decorator_and_a_user_solver():
    reg = Registry("thing")
    assert reg.register("a", 1) == 1

    @reg.register("b")
    def b():
        return 2
    assert reg.names() == ["a", "b"] and reg.get("b") is b

    @SOLVERS.register("widest-test")
    def widest(problem, budget):
        return problem.result(problem.space.widest(), "widest-test", budget)
    try:
        from tests.test_search import realistic_problem
        prob = realistic_problem(0)
        assert search(prob, 1e9, "widest-test")["config"] == list(prob.space.widest())
    finally:
        del SOLVERS["widest-test"]
