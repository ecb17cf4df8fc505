"""Defaults shared by the library and the command line that must not import torch (the
command line builds its options from them before any heavy import)."""

from pathlib import Path

# The channel-importance criteria (``aows.importance``) and the default: the criterion
# that kept the most top-1 straight after slicing in benchmarks/importance.py.
IMPORTANCE_CRITERIA = ("l1", "bn", "taylor", "none")
DEFAULT_IMPORTANCE = "l1"

# Loader processes of an image folder (never more than the CPU cores: more only compete
# with training for them); 0 loads in the training process.
DATA_WORKERS = 4

# The input resolution (px) of every space and command when none is given.
DEFAULT_RESOLUTION = 224

# The width rule (Table D.1 of the AOWS supplementary): each width's multipliers of its
# 1.0x width, from min_width to max_width in `levels` steps, rounded to `divisor`.
# A built-in space or space file searches the paper's 0.2x to 1.5x; a model's space
# (``--model``) stops at the model's own widths (1.0x: there are no weights beyond them).
SPACE_WIDTH_RULE = {"min_width": 0.2, "max_width": 1.5, "levels": 14, "divisor": 8}
MODEL_WIDTH_RULE = {"min_width": 0.2, "max_width": 1.0, "levels": 9, "divisor": 8}

# What a supernet learns from (``aows.train.objective``): the labels, the user's model
# (label-free distillation) or the user's loss.
OBJECTIVES = ("labels", "distill", "loss")

# The file of the models `aows quickstart --dense` searches (`aows.demo`; named here, where
# reading it needs no torch).
DEMO_MODEL_FILE = str(Path(__file__).with_name("demo.py").resolve())
