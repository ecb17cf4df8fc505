"""What the supernet learns from, and what its unary scores measure.

Three objectives share the sandwich step (``aows.train.loop``):

- ``labels`` (classification, the paper's): the widest configuration learns from the
  labels (cross-entropy); the others from the widest one's soft predictions (in-place
  distillation); an image's score at a configuration is its cross-entropy on the label.
- ``distill`` (label-free): the teacher is the user's model as loaded, frozen (eval
  mode, no gradient); every configuration, the widest included, learns to match the
  teacher's outputs, and an image's score is that same distillation loss. Any output
  structure works, so a detector, segmenter or backbone trains on images alone.
- ``loss`` (the user's task loss): the widest configuration learns from
  ``loss_fn(outputs, targets)``, the others from the widest one's outputs (in-place
  distillation, per output as below); an image's score is ``loss_fn``'s.

The distillation loss of an output structure (a tensor, or a tuple, list or dict of
them, nested) is the sum over its tensors, matched in order, of a per-image loss chosen
by the tensor's shape: a (batch, K) tensor with K > 1 is taken for logits, compared by
the KL divergence of the softmaxes, KL(teacher || student) (a pooled feature vector of
that shape is compared the same way: pass your own loss to compare it otherwise); any
other shape (feature maps, dense predictions) by the normalised squared error, the
image's mean squared difference over the teacher's mean square (scale-free, so a feature
map of large activations does not drown a head of small ones; 1.0 is the error of
predicting zeros). The mean square is the step's whole batch's in training
(``output_scales``) and the whole set's in evaluation (``DistillMeter``).

A user's ``loss_fn(outputs, targets)`` returns one loss per image (shape (batch,),
``reduction="none"``): the unary statistics are per image.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aows.defaults import OBJECTIVES
from aows.errors import AowsError
from aows.outputs import output_tensors
from aows.train.runtime import all_sum, dist_info

__all__ = ["OBJECTIVES", "DistillMeter", "Objective", "compare_outputs", "detach",
           "distill_loss", "load_loss", "output_scales", "output_tensors", "rows",
           "to_float"]

NORM_EPS = 1e-8  # added to the teacher's mean square: an all-zero output stays finite

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def _map(out, fn):
    """``out`` with ``fn`` applied to each tensor, its containers kept: a dict its type
    where the type rebuilds from a mapping (else a dict), a named tuple its type, other
    tuples and lists theirs."""
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, dict):
        items = {k: _map(v, fn) for k, v in out.items()}
        try:
            return type(out)(items)
        except Exception:  # a mapping type that does not rebuild from a dict
            return items
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(_map(v, fn) for v in out))
    if isinstance(out, (list, tuple)):
        return type(out)(_map(v, fn) for v in out)
    return out


def to_float(out):
    """The output structure with its tensors in float32 (AMP outputs may be half)."""
    return _map(out, lambda t: t.float())


def detach(out):
    """The output structure with its tensors detached."""
    return _map(out, lambda t: t.detach())


def is_logits(t: torch.Tensor) -> bool:
    """A (batch, K > 1) tensor: compared as class scores (KL of the softmaxes)."""
    return t.dim() == 2 and t.shape[1] > 1


def _pairs(student, teacher) -> list[tuple[torch.Tensor, torch.Tensor]]:
    s_all = output_tensors(student, "the supernet's output")
    t_all = output_tensors(teacher, "the teacher's output")
    if len(s_all) != len(t_all):
        raise AowsError(f"the supernet returns {len(s_all)} tensors but the teacher "
                        f"{len(t_all)}: their outputs must have the same structure")
    for s, t in zip(s_all, t_all):
        if s.shape != t.shape:
            raise AowsError(f"an output of shape {tuple(s.shape)} is compared with the "
                            f"teacher's of shape {tuple(t.shape)}: the model's outputs "
                            "must keep their shapes at every width (held output widths)")
    return [(s.float(), t.detach().float()) for s, t in zip(s_all, t_all)]


def _per_image(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per image: the KL divergence of the softmaxes (logits), else the mean squared
    difference (not yet normalised)."""
    if is_logits(s):
        logp_t = F.log_softmax(t, 1)
        return (logp_t.exp() * (logp_t - F.log_softmax(s, 1))).sum(1)
    return (s - t).pow(2).reshape(s.shape[0], -1).mean(1)


def output_scales(teacher) -> list[torch.Tensor | None]:
    """Per tensor of a teacher's output: its mean square over the batch (what a squared
    error is divided by), None for logits. One step computes them once, on its whole
    batch, so that the widest configuration and each sampled one, on its slice of the
    batch, are measured on the same scale."""
    return [None if is_logits(t) else t.detach().float().pow(2).mean()
            for t in output_tensors(teacher, "the teacher's output")]


def distill_loss(student, teacher, scales: list | None = None) -> torch.Tensor:
    """Per-image distillation loss (shape (batch,)) of an output structure against the
    teacher's (see the module's docstring for the rule per tensor); ``scales``: the
    normalisers (``output_scales``), by default the teacher's own on these images."""
    pairs = _pairs(student, teacher)
    if scales is None:
        scales = output_scales(teacher)
    total = None
    for (s, t), scale in zip(pairs, scales):
        per = _per_image(s, t)
        if scale is not None:
            per = per / (scale + NORM_EPS)
        total = per if total is None else total + per
    return total


class DistillMeter:
    """The distillation error of a data set, whatever its batches: per output tensor,
    the squared error summed over all images over the teacher's mean square over all
    images (KL divergences: their mean), summed over tensors; across processes under
    torch.distributed (``value``)."""

    def __init__(self):
        self.sums: list[list[float]] = []  # per tensor: [error sum, teacher energy sum]
        self.images = 0

    def update(self, student, teacher) -> None:
        pairs = _pairs(student, teacher)
        if not self.sums:
            self.sums = [[0.0, 0.0] for _ in pairs]
        for k, (s, t) in enumerate(pairs):
            self.sums[k][0] += float(_per_image(s, t).double().sum())
            if not is_logits(s):
                self.sums[k][1] += float(t.pow(2).reshape(t.shape[0], -1).mean(1)
                                         .double().sum())
        self.images += int(pairs[0][0].shape[0])

    def value(self) -> tuple[float, int]:
        """(the error, the images counted), summed over processes."""
        world = dist_info()[1]
        flat = {f"{k}_{j}": v for k, pair in enumerate(self.sums) for j, v in enumerate(pair)}
        total = all_sum({**flat, "images": float(self.images)}, world)
        n = max(total["images"], 1.0)
        err = 0.0
        for k in range(len(self.sums)):
            e, energy = total[f"{k}_0"], total[f"{k}_1"]
            err += e / n if energy == 0 else e / (energy + NORM_EPS * n)
        return err, int(total["images"])


def load_loss(spec: str) -> LossFn:
    """The loss function ``file.py:FUNCTION`` names (the user's own code, given on the
    command line: running it is what they asked for)."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise AowsError(f"--loss {spec}: give FILE.py:FUNCTION, a function "
                        "loss(outputs, targets) returning one loss per image")
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise AowsError(f"--loss {spec}: {path} is not a Python file (.py)")
    mod_name = f"aows_user_loss_{abs(hash(str(file.resolve())))}"
    try:
        loader = importlib.util.spec_from_file_location(mod_name, file)
        mod = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = mod
        loader.loader.exec_module(mod)
    except Exception as err:  # the user's file failed to import: say which and why
        sys.modules.pop(mod_name, None)
        raise AowsError(f"--loss {spec}: importing {path} failed: "
                        f"{type(err).__name__}: {err}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        have = sorted(n for n, v in vars(mod).items() if inspect.isfunction(v)
                      and not n.startswith("_"))
        raise AowsError(f"--loss {spec}: {path} has no function {name!r} (it has: "
                        f"{', '.join(have) or 'none'})")
    return fn


def _user_per_image(fn: LossFn, out, targets: torch.Tensor, batch: int) -> torch.Tensor:
    per = fn(out, targets)
    if not isinstance(per, torch.Tensor) or per.shape != (batch,):
        shape = tuple(per.shape) if isinstance(per, torch.Tensor) else type(per).__name__
        raise AowsError(f"the loss function returned {shape} for a batch of {batch}: it "
                        f"must return one loss per image, shape ({batch},) (e.g. "
                        "reduction='none', then a mean over the other dimensions)")
    return per.float()


class Objective:
    """One objective's parts of the sandwich step (``aows.train.loop``).

    Args:
        kind: ``labels``, ``distill`` or ``loss``.
        teacher: the frozen model (``distill``).
        loss_fn: the user's per-image loss (``loss``).
    """

    def __init__(self, kind: str, teacher: nn.Module | None = None,
                 loss_fn: LossFn | None = None):
        if kind not in OBJECTIVES:
            raise AowsError(f"objective must be one of {', '.join(OBJECTIVES)}, not {kind!r}")
        if kind == "distill" and teacher is None:
            raise AowsError("--objective distill needs a teacher: your trained model "
                            "(--model with its weights)")
        if kind == "loss" and loss_fn is None:
            raise AowsError("--objective loss needs a loss function (--loss "
                            "FILE.py:FUNCTION, or loss_fn= from Python)")
        self.kind, self.teacher, self.loss_fn = kind, teacher, loss_fn
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    @property
    def accuracy(self) -> bool:
        """Whether top-1 against labels is meaningful (the ``labels`` objective)."""
        return self.kind == "labels"

    @torch.no_grad()
    def context(self, x: torch.Tensor):
        """What a step needs besides the batch: the teacher's outputs (``distill``)."""
        return to_float(self.teacher(x)) if self.kind == "distill" else None

    def widest(self, out, y, ctx) -> torch.Tensor:
        """Per-image training loss of the widest configuration (also its score)."""
        if self.kind == "labels":
            return F.cross_entropy(out, y, reduction="none")
        if self.kind == "distill":
            return distill_loss(out, ctx)
        return _user_per_image(self.loss_fn, out, y, _batch(out))

    def target(self, widest_out, ctx):
        """What the narrower configurations learn from."""
        if self.kind == "labels":
            return widest_out.softmax(1)
        return ctx if self.kind == "distill" else widest_out

    def scales(self, target):
        """The normalisers of a step's target, from its whole batch (``output_scales``)."""
        return None if self.kind == "labels" else output_scales(target)

    def narrow(self, out, target, scales=None) -> torch.Tensor:
        """Per-image training loss of a narrower configuration against ``target``
        (rows: the configuration's slice of the batch; ``scales``: the whole batch's)."""
        if self.kind == "labels":
            return -(target * F.log_softmax(out, dim=1)).sum(1)
        return distill_loss(out, target, scales)

    def score(self, out, y, trained: torch.Tensor) -> torch.Tensor:
        """Per-image score of a configuration (its loss differences feed the unaries);
        ``trained``: its per-image training loss."""
        if self.kind == "labels":
            return F.cross_entropy(out, y, reduction="none")
        if self.kind == "distill":
            return trained
        return _user_per_image(self.loss_fn, out, y, _batch(out))


def _batch(out) -> int:
    return output_tensors(out)[0].shape[0]


def rows(out, part: slice):
    """The rows ``part`` of every tensor of an output structure (its containers kept)."""
    return _map(out, lambda t: t[part])


@torch.no_grad()
def compare_outputs(net: nn.Module, reference: nn.Module, batches,
                    device: torch.device | str = "cpu") -> dict:
    """How far ``net``'s outputs are from ``reference``'s (the user's original model) on
    ``batches`` of (images, labels), both in eval mode.

    Returns:
        ``distill``: the mean per-image distillation loss (the module's rule: 0 for the
        reference's outputs, 1.0 per dense output for outputs of zeros); ``agreement``:
        for a classifier (one (batch, K) output), the share of images whose top-1 class
        is the reference's, else None; ``top1``: the top-1 accuracy where the labels are
        known (>= 0) and the output is class scores, else None; ``images``.
    """
    device = torch.device(device)
    net.eval().to(device)
    reference.eval().to(device)
    meter = DistillMeter()
    agree, correct, labelled = 0, 0, 0
    classifier = True
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out, ref = to_float(net(x)), to_float(reference(x))
        meter.update(out, ref)
        outs = output_tensors(out)
        classifier = classifier and len(outs) == 1 and is_logits(outs[0])
        if classifier:
            top = outs[0].argmax(1)
            agree += int((top == output_tensors(ref)[0].argmax(1)).sum())
            known = y >= 0
            correct += int((top[known] == y[known]).sum())
            labelled += int(known.sum())
    err, n = meter.value()
    counts = all_sum({"agree": float(agree), "correct": float(correct),
                      "labelled": float(labelled)}, dist_info()[1])
    return {"distill": err,
            "agreement": counts["agree"] / max(n, 1) if classifier else None,
            "top1": counts["correct"] / counts["labelled"]
            if classifier and counts["labelled"] else None, "images": n}
