"""The distillation losses (torch tensors), shared by text and token classification: the hard-label cross entropy,
the KL term on temperature-scaled distributions, and the text-classification loss that combines them."""

from __future__ import annotations

from typing import Any

#: the training-set column holding the teacher's logits
SOFT = "teacher_logits"
#: the label of an unlabelled transfer text (ignored by the cross entropy, as in torch)
UNLABELLED = -100


def hard_loss(logits: Any, labels: Any, label_smoothing: float = 0.0) -> Any:
    """Cross entropy over the labelled rows (``logits [..., labels]``: a text's row, or a token's; label ``-100``
    marks an unlabelled row); 0 (in the graph) when there is none."""
    import torch.nn.functional as F

    flat, y = logits.float().flatten(0, -2), labels.flatten()
    labelled = y != UNLABELLED
    if not bool(labelled.any()):
        return flat.sum() * 0.0
    return F.cross_entropy(flat[labelled], y[labelled], label_smoothing=label_smoothing)


def kl_term(student: Any, target: Any, temperature: float) -> Any:
    """``KL(target || softmax(student / T))`` averaged over the rows (``target``: the teacher's probabilities)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student.float() / temperature, dim=-1), target, reduction="batchmean")


def distillation_loss(
    student: Any, teacher: Any, labels: Any, temperature: float, alpha: float, label_smoothing: float = 0.0
) -> Any:
    """``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels)`` (torch tensors).

    The KL term is averaged over every row; the cross entropy over the labelled rows only (label ``-100`` marks an
    unlabelled transfer text). The ``T^2`` factor keeps the soft gradients' scale independent of ``T``
    (Hinton et al., 2015).
    """
    import torch

    loss = student.new_zeros(())
    if alpha > 0:
        target = torch.softmax(teacher.float() / temperature, dim=-1)
        loss = loss + alpha * temperature**2 * kl_term(student, target, temperature)
    if alpha < 1:
        loss = loss + (1 - alpha) * hard_loss(student, labels, label_smoothing)
    return loss
