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
by the tensor's shape: a (batch, K) tensor with K > 1 is logits, compared by the KL
divergence of the softmaxes, KL(teacher || student); any other shape (feature maps,
dense predictions, boxes) by the normalised squared error, the image's mean squared
difference over the teacher's mean square on the batch (scale-free, so a feature map of
large activations does not drown a head of small ones; 1.0 is the error of predicting
zeros).

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

__all__ = ["OBJECTIVES", "Objective", "compare_outputs", "detach", "distill_loss",
           "load_loss", "output_tensors", "rows", "to_float"]

NORM_EPS = 1e-8  # added to the teacher's mean square: an all-zero output stays finite

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def to_float(out):
    """The output structure with its tensors in float32 (AMP outputs may be half); a
    dict stays a dict, a named tuple its type, other sequences lists or tuples."""
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, dict):
        return {k: to_float(v) for k, v in out.items()}
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a named tuple
        return type(out)(*(to_float(v) for v in out))
    if isinstance(out, (list, tuple)):
        return type(out)(to_float(v) for v in out)
    return out


def detach(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, dict):
        return {k: detach(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [detach(v) for v in out]
    return out


def is_logits(t: torch.Tensor) -> bool:
    """A (batch, K > 1) tensor: compared as class scores (KL of the softmaxes)."""
    return t.dim() == 2 and t.shape[1] > 1


def distill_loss(student, teacher) -> torch.Tensor:
    """Per-image distillation loss (shape (batch,)) of an output structure against the
    teacher's (see the module's docstring for the rule per tensor)."""
    s_all = output_tensors(student, "the supernet's output")
    t_all = output_tensors(teacher, "the teacher's output")
    if len(s_all) != len(t_all):
        raise AowsError(f"the supernet returns {len(s_all)} tensors but the teacher "
                        f"{len(t_all)}: their outputs must have the same structure")
    total = None
    for s, t in zip(s_all, t_all):
        if s.shape != t.shape:
            raise AowsError(f"an output of shape {tuple(s.shape)} is compared with the "
                            f"teacher's of shape {tuple(t.shape)}: the model's outputs "
                            "must keep their shapes at every width (held output widths)")
        s, t = s.float(), t.detach().float()
        if is_logits(s):
            logp_t = F.log_softmax(t, 1)
            per = (logp_t.exp() * (logp_t - F.log_softmax(s, 1))).sum(1)
        else:
            diff = (s - t).pow(2).reshape(s.shape[0], -1).mean(1)
            per = diff / (t.pow(2).mean() + NORM_EPS)
        total = per if total is None else total + per
    return total


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

    def narrow(self, out, target) -> torch.Tensor:
        """Per-image training loss of a narrower configuration against ``target``
        (rows: the configuration's slice of the batch)."""
        if self.kind == "labels":
            return -(target * F.log_softmax(out, dim=1)).sum(1)
        return distill_loss(out, target)

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
    """The rows ``part`` of every tensor of an output structure."""
    if isinstance(out, torch.Tensor):
        return out[part]
    if isinstance(out, dict):
        return {k: rows(v, part) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [rows(v, part) for v in out]
    return out


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
    total, agree, correct, labelled, n = 0.0, 0, 0, 0, 0
    classifier = True
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out, ref = to_float(net(x)), to_float(reference(x))
        total += float(distill_loss(out, ref).double().sum())
        outs = output_tensors(out)
        classifier = classifier and len(outs) == 1 and is_logits(outs[0])
        if classifier:
            top = outs[0].argmax(1)
            agree += int((top == output_tensors(ref)[0].argmax(1)).sum())
            known = y >= 0
            correct += int((top[known] == y[known]).sum())
            labelled += int(known.sum())
        n += x.shape[0]
    n_ = max(n, 1)
    return {"distill": total / n_, "agreement": agree / n_ if classifier else None,
            "top1": correct / labelled if classifier and labelled else None, "images": n}
