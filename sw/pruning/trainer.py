"""Fine-pruning loop: movement pruning with distillation, then surgery and a filled fine-tune.

Built on HF Accelerate: one :class:`accelerate.Accelerator` places the model, wraps it for
data-parallel training when several processes run, shards every batch across them
(``split_batches``: the recipe's ``batch_size`` is the global batch whatever the process count)
and synchronises gradients. The same command therefore runs on one CPU by default, and unchanged
under ``torchrun --nproc_per_node N sw/prune.py`` or ``accelerate launch --num_processes N
sw/prune.py`` (NCCL on GPUs, Gloo on CPUs); only the main process writes. The loop keeps the
structure of transformers' ``Trainer`` (two optimizer groups, a per-step learning-rate
scheduler and threshold, evaluation per epoch) but is written out, because movement pruning
sets the threshold and the regularization lambda between steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from sw.data import ImageSplit
from sw.data.sequences import SequenceSplit
from sw.models import model_inputs
from sw.progress import progress_bar
from sw.settings import InvalidSetting, check_bool, check_integer, check_number
from sw.train_digits import augment, evaluate

from .masked import PatchedModel, patch_model
from .methods import PruningArgs, regularization_loss
from .surgery import KeepMask, SurgeryReport, apply_surgery

__all__ = ["PruneResult", "TrainingOptions", "distillation_loss", "fine_prune", "finetune"]


@dataclass(frozen=True)
class TrainingOptions:
    """Optimisation settings of a fine-pruning run (the ``"training"`` section of a recipe).

    ``warmup_epochs`` sets the learning-rate warmup and, as in nn_pruning, the unit of the
    threshold schedule's ``initial_warmup`` / ``final_warmup``. ``finetune_average_epochs``
    > 0 makes each fine-tune (masked and filled) end on the running average of its weights
    over every optimizer step of its last that many epochs (weight averaging with
    ``torch.optim.swa_utils.AveragedModel``); 0 keeps the last step's weights.
    ``mixup_alpha`` > 0 trains every stage on mixup batches: each batch is blended with a
    shuffled copy of itself by a factor drawn from Beta(alpha, alpha), the teacher sees the same
    blended images and the labels are blended likewise; 0 trains on the images as they are.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: int = 1
    seed: int = 0
    max_shift: int = 2
    max_train_samples: int | None = None
    final_finetune_epochs: int = 10
    final_finetune_lr: float = 5e-4
    finetune_average_epochs: int = 0
    mixup_alpha: float = 0.0
    tie_attention_heads: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            check_integer(name, getattr(self, name), minimum=1)
        for name in ("warmup_epochs", "max_shift", "final_finetune_epochs",
                     "finetune_average_epochs"):
            check_integer(name, getattr(self, name), minimum=0)
        check_integer("seed", self.seed, minimum=0, maximum=2 ** 63 - 1)    # torch's seed range
        if self.max_train_samples is not None:
            check_integer("max_train_samples", self.max_train_samples, minimum=1)
        for name in ("lr", "final_finetune_lr"):
            check_number(name, getattr(self, name), "a finite number > 0", lambda value: value > 0)
        for name in ("weight_decay", "mixup_alpha"):
            check_number(name, getattr(self, name), "a finite number >= 0",
                         lambda value: value >= 0)
        check_bool("tie_attention_heads", self.tie_attention_heads)
        if self.finetune_average_epochs > self.final_finetune_epochs:
            raise InvalidSetting("finetune_average_epochs", (
                f"finetune_average_epochs ({self.finetune_average_epochs}) exceeds "
                f"final_finetune_epochs ({self.final_finetune_epochs})"))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingOptions":
        """Build from a recipe section; unknown keys raise ``ValueError`` listing the known."""
        known = [spec.name for spec in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"Unknown training options {unknown}; known: {', '.join(known)}")
        return cls(**values)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor,
                      alpha_ce: float, alpha_teacher: float, temperature: float) -> Tensor:
    """``alpha_ce * CE(student, labels) + alpha_teacher * T**2 * KL(p_teacher || p_student)``.

    Both distributions are softmaxes at temperature ``T``; the KL is summed over classes and
    averaged over the batch (``batchmean``), as in nn_pruning / DistilBERT. Without a teacher
    (``teacher_logits=None``) the loss is the plain cross-entropy.
    """
    cross_entropy = F.cross_entropy(student_logits, labels)
    if teacher_logits is None:
        return cross_entropy
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.log_softmax(teacher_logits / temperature, dim=-1),
                  reduction="batchmean", log_target=True)
    return alpha_ce * cross_entropy + alpha_teacher * kl * temperature ** 2


def _lr_factor(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def _mixup(images: Tensor, labels: Tensor, alpha: float, generator: torch.Generator,
           classes: int) -> tuple[Tensor, Tensor]:
    """Blend ``images`` with a shuffled copy of the batch by one factor drawn from Beta(alpha,
    alpha); return the blended images and the blended one-hot labels (class probabilities)."""
    seed = int(torch.randint(2 ** 31, (), generator=generator))
    factor = float(np.random.default_rng(seed).beta(alpha, alpha))
    order = torch.randperm(len(images), generator=generator).to(images.device)
    one_hot = F.one_hot(labels, classes).to(images.dtype)
    return (factor * images + (1 - factor) * images[order],
            factor * one_hot + (1 - factor) * one_hot[order])


def _accelerator() -> Accelerator:
    """The process's Accelerator (torchrun / ``accelerate launch`` environment, or one process).

    ``split_batches`` keeps the global batch at ``TrainingOptions.batch_size`` and the number of
    optimizer steps independent of the process count, so a recipe means the same thing on one
    CPU and on eight GPUs.
    """
    # Without CUDA, say so explicitly: only then does Accelerate treat torchrun's processes as
    # one data-parallel group on CPUs (Gloo) instead of N independent runs.
    return Accelerator(cpu=not torch.cuda.is_available(),
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def _train_loader(split: ImageSplit | SequenceSplit, options: TrainingOptions,
                  accelerator: Accelerator):
    images, labels = split.train_inputs, split.train_labels
    if options.max_train_samples is not None:
        images, labels = images[:options.max_train_samples], labels[:options.max_train_samples]
    dataset = torch.utils.data.TensorDataset(images, labels)
    batch_size = options.batch_size
    if accelerator.num_processes > 1 and batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size {batch_size} is not divisible by the "
                         f"{accelerator.num_processes} processes")
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(options.seed))


@dataclass
class PruneResult:
    """Outcome of :func:`fine_prune`.

    Members
    -------
    pruned : nn.Module
        Dense shapes, masked weights zeroed, plain linears (saves with ``save_pretrained``).
    masks : dict of str to Tensor
        Final keep-masks (bool) of every patched parameter of ``pruned``.
    patch : PatchedModel
        The patch record (``patched`` holds block shapes; the model itself is unpatched).
    accuracy : float
        Validation accuracy of ``pruned``.
    surgery : SurgeryReport or None
        Heads and FFN neurons removed by :func:`apply_surgery`.
    shrunk : nn.Module or None
        ``pruned`` after surgery: removed heads and neurons gone, in-head block sparsity kept
        as zeros, same function (what the accelerator runs).
    filled : nn.Module or None
        Shrunk, mask-free model after the final fine-tune (``final_finetune``).
    filled_accuracy : float or None
    history : list of dict
        ``{"stage", "epoch", "step", "threshold", "loss", "val_accuracy"}`` per epoch.
    seconds : float
        Wall time of the whole run.
    processes : int
        Data-parallel processes that shared every batch.
    """

    pruned: nn.Module
    masks: dict[str, Tensor]
    patch: PatchedModel
    accuracy: float
    surgery: SurgeryReport | None = None
    shrunk: nn.Module | None = None
    filled: nn.Module | None = None
    filled_accuracy: float | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1


def _train_epochs(model, teacher, split, args, options, *, epochs, lr, parameter_groups,
                  on_step, stage, progress, accelerator, regularization=None, evaluate_at=None,
                  average_epochs: int = 0):
    """Shared epoch loop; returns the history entries. ``on_step(step)`` sets the threshold and
    returns the regularization lambda. With ``average_epochs`` > 0 the model ends on the average
    of its parameters after every step of the last ``average_epochs`` epochs."""
    loader = _train_loader(split, options, accelerator)
    steps_per_epoch = len(loader)
    total_steps = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(parameter_groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(total_steps, options.warmup_epochs * steps_per_epoch))
    wrapped, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader,
                                                                scheduler)
    # Each process shifts its own share of the batch; distinct streams per process.
    generator = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    device = accelerator.device
    show = progress and accelerator.is_main_process
    history, step = [], 0
    averaged = None
    for epoch in range(1, epochs + 1):
        wrapped.train()
        loss_sum, seen = 0.0, 0
        bar = progress_bar(loader, enabled=show, total=steps_per_epoch,
                           desc=f"{stage} {epoch}/{epochs}", leave=False, dynamic_ncols=True)
        for batch_images, batch_labels in bar:
            batch_images = augment(split, batch_images.cpu(), options.max_shift,
                                   generator).to(device)
            targets = batch_labels
            if options.mixup_alpha > 0:
                batch_images, targets = _mixup(batch_images, batch_labels, options.mixup_alpha,
                                               generator, split.num_classes)
            step += 1
            lam = on_step(step)
            logits = wrapped(**model_inputs(model, batch_images)).logits
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(**model_inputs(teacher, batch_images)).logits
            loss = distillation_loss(logits, teacher_logits, targets, args.distil_alpha_ce,
                                     args.distil_alpha_teacher, args.distil_temperature)
            if regularization is not None and lam:
                loss = loss + lam * regularization()
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            if epoch > epochs - average_epochs:
                if averaged is None:
                    averaged = torch.optim.swa_utils.AveragedModel(model)
                averaged.update_parameters(model)
            # Report the global batch's loss: the mean over the processes' equal shares.
            loss_sum += float(accelerator.reduce(loss.detach(), "mean")) * len(batch_labels)
            seen += len(batch_labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        bar.close()
        if averaged is not None and epoch == epochs:
            with torch.no_grad():
                for mine, mean in zip(model.parameters(), averaged.module.parameters()):
                    mine.copy_(mean)
        threshold = evaluate_at(step) if evaluate_at is not None else None
        accuracy = evaluate(model, split.val_inputs.to(device), split.val_labels.to(device))
        history.append({"stage": stage, "epoch": epoch, "step": step, "threshold": threshold,
                        "loss": loss_sum / max(seen, 1), "val_accuracy": accuracy})
        if show:
            described = "" if threshold is None else f" threshold {threshold:.3f}"
            tqdm.write(f"{stage} epoch {epoch}/{epochs}: loss {loss_sum / max(seen, 1):.4f}"
                       f"{described} val acc {accuracy:.4f}")
    accelerator.free_memory()
    return history


def _freeze_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Register a ``KeepMask`` on every masked parameter named in ``masks`` (mutates)."""
    for key, mask in masks.items():
        module_name, _, kind = key.rpartition(".")
        if not bool(mask.all()):
            parametrize.register_parametrization(model.get_submodule(module_name), kind,
                                                 KeepMask(mask))


@torch.no_grad()
def _bake(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Remove the ``KeepMask`` parametrizations, leaving the masked values (mutates)."""
    for key in masks:
        module_name, _, kind = key.rpartition(".")
        module = model.get_submodule(module_name)
        if parametrize.is_parametrized(module, kind):
            parametrize.remove_parametrizations(module, kind, leave_parametrized=True)


def finetune(model: nn.Module, teacher: nn.Module | None, split: ImageSplit | SequenceSplit,
             args: PruningArgs,
             options: TrainingOptions, *, stage: str = "finetune",
             progress: bool = True,
             on_step: Callable[[int, int], None] | None = None) -> list[dict]:
    """Fine-tune every parameter of ``model`` with distillation; return the per-epoch history.

    Mutates the model (trains it in place). Parametrizations on the model (``KeepMask``) stay in
    force, so a masked model keeps its zeros. ``on_step(step, total_steps)``, when given, is
    called before every optimizer step (steps from 1).
    """
    accelerator = _accelerator()
    model.to(accelerator.device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad],
               "weight_decay": options.weight_decay}]
    samples = len(split.train_labels) if options.max_train_samples is None else min(
        options.max_train_samples, len(split.train_labels))
    total_steps = options.final_finetune_epochs * math.ceil(samples / options.batch_size)

    def step_hook(step: int) -> float:
        if on_step is not None:
            on_step(step, total_steps)
        return 0.0

    return _train_epochs(model, teacher, split, args, options,
                         epochs=options.final_finetune_epochs, lr=options.final_finetune_lr,
                         parameter_groups=groups, on_step=step_hook, stage=stage,
                         progress=progress, accelerator=accelerator,
                         average_epochs=options.finetune_average_epochs)


def fine_prune(student: nn.Module, teacher: nn.Module | None,
               split: ImageSplit | SequenceSplit,
               args: PruningArgs, options: TrainingOptions, *, progress: bool = True,
               on_step: Callable[[int, int], None] | None = None,
               on_finetune_step: Callable[[int, int], None] | None = None) -> PruneResult:
    """Movement-prune ``student`` with distillation from ``teacher``; optionally fill and tune.

    Mutates ``student`` (it becomes ``result.pruned``). Steps: patch the linears; train with
    two optimizer groups (mask scores at ``mask_scores_learning_rate`` without weight decay,
    weights at ``options.lr``), the threshold and regularization lambda set per step by the
    cubic schedule; bake the masks at the evaluation threshold. With ``args.final_finetune``,
    the pruned model is first fine-tuned with its masks frozen (``finetune-masked``). Then a
    copy goes through :func:`apply_surgery` (``result.shrunk``: shrunk shapes, in-head zeros
    kept, same function), and with ``args.final_finetune`` a copy of that, without masks, is
    fine-tuned again (``finetune-filled``, ``result.filled``); each fine-tune runs
    ``options.final_finetune_epochs``.

    ``on_step(step, total_steps)``, when given, is called before every optimizer step of the
    pruning stage (steps count from 1), after the threshold is set: the hook for schedules of
    other kinds of pruning that share the run (token keep-rate warm-up, for example).
    ``on_finetune_step(step, total_steps)`` is the same hook for the ``finetune-masked`` stage.
    """
    if isinstance(split, SequenceSplit) and options.mixup_alpha > 0:
        raise InvalidSetting("mixup_alpha", "mixup_alpha must be 0 for sequence data (token "
                                            f"ids cannot be blended), not {options.mixup_alpha}")
    started = time.perf_counter()
    accelerator = _accelerator()
    device = accelerator.device
    torch.manual_seed(options.seed)
    student.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    patch = patch_model(student, args, tie_attention_heads=options.tie_attention_heads)
    if progress and accelerator.is_main_process:
        tqdm.write(patch.summary())
    samples = len(split.train_labels) if options.max_train_samples is None else min(
        options.max_train_samples, len(split.train_labels))
    steps_per_epoch = math.ceil(samples / options.batch_size)
    schedule = args.schedule(warmup_steps=options.warmup_epochs * steps_per_epoch,
                             total_steps=options.epochs * steps_per_epoch)
    score_ids = {id(p) for p in patch.mask_score_parameters()}
    groups = [
        {"params": patch.mask_score_parameters(), "lr": args.mask_scores_learning_rate,
         "weight_decay": 0.0},
        {"params": [p for p in student.parameters() if id(p) not in score_ids],
         "weight_decay": options.weight_decay},
    ]

    total_steps = options.epochs * steps_per_epoch

    def step_prune(step: int) -> float:
        # nn_pruning passes the HF Trainer's global_step, which the Trainer increments only
        # after the optimizer step: the k-th step (from 1) is scheduled at k - 1.
        point = schedule.at(step - 1)
        patch.set_threshold(point.threshold)
        if on_step is not None:
            on_step(step, total_steps)
        return point.regularization_lambda

    def evaluate_at(step: int) -> float:
        point = schedule.at(step, training=False,
                            eval_with_current_patch_params=args.eval_with_current_patch_params)
        patch.set_threshold(point.threshold)
        return point.threshold

    def regularization() -> Tensor:
        return regularization_loss(
            attention_scores=patch.attention_scores, dense_scores=patch.dense_scores,
            mode=args.regularization, attention_lambda=args.attention_lambda,
            dense_lambda=args.dense_lambda)

    history = _train_epochs(student, teacher, split, args, options, epochs=options.epochs,
                            lr=options.lr, parameter_groups=groups, on_step=step_prune,
                            stage="prune", progress=progress, accelerator=accelerator,
                            regularization=None if args.regularization == "disabled"
                            else regularization, evaluate_at=evaluate_at)
    evaluate_at(options.epochs * steps_per_epoch)
    masks = patch.final_masks()
    pruned = patch.unpatch()
    accuracy = evaluate(pruned, split.val_inputs.to(device), split.val_labels.to(device))
    if args.final_finetune:
        # Masks frozen: the dense-shaped pruned model trains with its zeros held by KeepMask.
        _freeze_masks(pruned, masks)
        history += finetune(pruned, teacher, split, args, options, stage="finetune-masked",
                            progress=progress, on_step=on_finetune_step)
        _bake(pruned, masks)
        accuracy = evaluate(pruned, split.val_inputs.to(device),
                            split.val_labels.to(device))
    result = PruneResult(pruned=pruned.eval(), masks=masks, patch=patch, accuracy=accuracy,
                         history=history)
    # Surgery on a copy: the shrunk model (same function, in-head zeros kept as plain zeros).
    shrunk = copy.deepcopy(pruned)
    result.surgery = apply_surgery(shrunk, masks, keep_masks=False)
    result.shrunk = shrunk.eval()
    if args.final_finetune:
        filled = copy.deepcopy(shrunk)   # no masks: the zeros may train again
        result.history += finetune(filled, teacher, split, args, options, stage="finetune-filled",
                                   progress=progress)
        result.filled = filled.eval()
        result.filled_accuracy = evaluate(filled, split.val_inputs.to(device),
                                          split.val_labels.to(device))
    result.seconds = time.perf_counter() - started
    result.processes = accelerator.num_processes
    return result
