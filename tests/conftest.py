import os

import pytest

# Timing tests share 2 cores with the rest of the suite: keep every library to one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def tiny_space():
    from aows.spaces import mobilenet_v1
    return mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=10)


@pytest.fixture
def fast_protocol_args():
    return ["--warmup", "1", "--rounds", "2", "--runs", "1", "--chunk", "4"]
