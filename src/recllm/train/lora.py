"""LoRA fine-tuning of a causal language model on instruction examples (peft), resumable and reproducible.

Each example is rendered exactly as the re-rankers and tasks render their prompts (the model's chat template,
then the answer prefix) and tokenised as scoring tokenises it (``HFBackend.encode_pair``); the loss is the
cross-entropy of the target tokens only (prompt and padding are masked with -100), averaged over every target
token of an optimizer step. Batches are left-padded so every target sits at the end of its row, and the
language-model head runs only over the last positions (``logits_to_keep``), not over the whole prompt.

Output folder: the peft adapter (``adapter_model.safetensors``, ``adapter_config.json``), ``recllm-train.json``
(base model, tasks, naming, hyper-parameters, losses, sizes, time, device) and, for id naming,
``item-names.json``. ``create_llm("hf:OUT_DIR")`` loads the base model and merges the adapter into it.

Checkpoints (``save_every`` steps, under ``out_dir/checkpoints/step-N``) hold the trainable weights, the AdamW
state, the scheduler position, the loss history and the RNG state, as safetensors + JSON (never pickle).
``resume=True`` continues from the newest one; data order depends only on (seed, epoch), so a resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from recllm.config import build, load_json_record
from recllm.errors import ConfigError
from recllm.llm.resolve import ADAPTER_WEIGHTS, DEFAULT_SPECS, TRAIN_MARKER
from recllm.progress import training_progress
from recllm.prompts.naming import NAMES_FILE, tuned_catalog
from recllm.torch_runtime import pick_device, torch_threads
from recllm.train.instructions import Example, InstructionSet

__all__ = ["LoraTrainConfig", "StepRecord", "TrainResult", "train_lora", "tuned_catalog"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
IGNORE = -100
# options that do not change the result: they may differ between a run and its resumption
_NEUTRAL = frozenset({"save_every", "keep_checkpoints", "log_every", "num_threads", "gradient_checkpointing"})


class LoraTrainConfig(BaseModel):
    """Hyper-parameters of a LoRA run; every field is described in ``train_lora``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")
    lr: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=8)
    seed: int = 0
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    max_eval_examples: int = Field(default=512, ge=1)
    eos: bool = True
    save_every: int | None = Field(default=None, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=10, ge=1)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    gradient_checkpointing: bool = False

    def model_post_init(self, context: Any, /) -> None:
        modules = self.target_modules
        if isinstance(modules, str):
            if modules != "all-linear":
                names = tuple(m.strip() for m in modules.split(",") if m.strip())
                if not names:
                    raise ConfigError("target_modules is empty; name modules (e.g. q_proj,v_proj) or 'all-linear'")
                object.__setattr__(self, "target_modules", names)
        elif not modules:
            raise ConfigError("target_modules is empty; name modules (e.g. q_proj,v_proj) or 'all-linear'")


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step: its number (1-based), epoch (1-based), mean target-token loss, learning rate, the
    target tokens the loss was computed over, all tokens read (prompts included, padding not) and its time."""

    step: int
    epoch: int
    loss: float
    lr: float
    tokens: int
    input_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class EvalRecord:
    """Mean target-token loss on the held-out examples after ``step`` optimizer steps (0: before training)."""

    step: int
    epoch: int
    loss: float


@dataclass
class TrainResult:
    """What a run did: where the adapter is, the loss per step and per epoch, eval losses, sizes and timing."""

    out_dir: Path
    steps: int
    history: list[StepRecord]
    epochs: list[dict[str, Any]]
    evals: list[EvalRecord]
    n_train: int
    n_eval: int
    n_dropped: int
    seconds: float
    device: str
    precision: str
    trainable_params: int
    total_params: int
    resumed_from: int | None = None
    base_model: str | None = None

    @property
    def losses(self) -> list[float]:
        """Training loss of every step, in order."""
        return [r.loss for r in self.history]

    @property
    def steps_per_second(self) -> float:
        """Optimizer steps per second of step time (evaluation and checkpoints not counted)."""
        busy = sum(r.seconds for r in self.history)
        return len(self.history) / busy if busy > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Tokens read per second of step time (prompt and target, forward and backward)."""
        busy = sum(r.seconds for r in self.history)
        return sum(r.input_tokens for r in self.history) / busy if busy > 0 else 0.0

    @property
    def eval_loss(self) -> float | None:
        """The last eval loss (None without eval examples)."""
        return self.evals[-1].loss if self.evals else None

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "steps": self.steps, "history": [asdict(r) for r in self.history],
                "epochs": self.epochs, "evals": [asdict(e) for e in self.evals], "n_train": self.n_train,
                "n_eval": self.n_eval, "n_dropped": self.n_dropped, "seconds": self.seconds, "device": self.device,
                "precision": self.precision, "trainable_params": self.trainable_params,
                "total_params": self.total_params, "resumed_from": self.resumed_from, "base_model": self.base_model,
                "steps_per_second": self.steps_per_second, "tokens_per_second": self.tokens_per_second}


@dataclass(frozen=True)
class _Encoded:
    """An example as token ids: the prompt part (masked in the loss) and the target part."""

    prompt: tuple[int, ...]
    target: tuple[int, ...]
    user: str

    def __len__(self) -> int:
        return len(self.prompt) + len(self.target)


@dataclass
class _State:
    """Everything that moves during training and goes into a checkpoint besides tensors."""

    step: int = 0
    history: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# ---- helpers --------------------------------------------------------------------------------------------
def _config(config: LoraTrainConfig | Mapping[str, Any] | None, options: Mapping[str, Any]) -> LoraTrainConfig:
    if isinstance(config, LoraTrainConfig):
        return build(LoraTrainConfig, {**config.model_dump(), **options}, where="lora config") if options else config
    return build(LoraTrainConfig, {**dict(config or {}), **options}, where="lora config")


def _base_spec(model: str | Path | None) -> str | None:
    """The base model as recorded: None for the default, an absolute path for local files, else the hub id."""
    if model is None or str(model).strip().lower() in DEFAULT_SPECS:
        return None
    path = Path(str(model)).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def _split_eval(encoded: list[_Encoded], fraction: float, limit: int, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, eval rows): whole users held out (seeded) until ``fraction`` of the examples (at most
    ``limit``) are eval, so no eval example shares a user's sliding windows with a training one."""
    if fraction <= 0 or len(encoded) < 2:
        return list(range(len(encoded))), []
    want = min(limit, max(1, round(fraction * len(encoded))))
    by_user: dict[str, list[int]] = {}
    for i, e in enumerate(encoded):
        by_user.setdefault(e.user, []).append(i)
    users = sorted(by_user)
    held: list[int] = []
    for u in np.random.default_rng([seed, 7]).permutation(len(users)):
        rows = by_user[users[int(u)]]
        if len(held) + len(rows) > want and held:
            continue
        if len(held) + len(rows) >= len(encoded):  # keep something to train on
            continue
        held.extend(rows)
        if len(held) >= want:
            break
    if not held:  # a single user: split that user's examples instead
        order = np.random.default_rng([seed, 7]).permutation(len(encoded))
        held = sorted(int(r) for r in order[:want])
    held_set = set(held)
    return [i for i in range(len(encoded)) if i not in held_set], sorted(held)


def _batch(rows: Sequence[_Encoded], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded ids, attention mask, position ids, and the labels of the last ``keep`` positions."""
    width = max(len(r) for r in rows)
    keep = max(len(r.target) for r in rows) + 1  # logits at the position before each target token
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), keep - 1), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        tokens = [*row.prompt, *row.target]
        ids[r, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        mask[r, width - len(tokens):] = 1
        labels[r, keep - 1 - len(row.target):] = torch.tensor(row.target, dtype=torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device),
            "labels": labels.to(device), "keep": torch.tensor(keep)}


def _token_loss_sum(model: Any, batch: Mapping[str, torch.Tensor], keeps_logits: bool) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the target tokens of a batch, and how many there are."""
    keep = int(batch["keep"])
    inputs: dict[str, Any] = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    if keeps_logits:
        inputs["logits_to_keep"] = keep
    logits = model(**inputs, use_cache=False).logits[:, -keep:-1]
    labels = batch["labels"]
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


def _fingerprint(encoded: Sequence[_Encoded], rows: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for i in rows:
        digest.update(np.asarray(encoded[i].prompt, dtype=np.int64).tobytes())
        digest.update(b"|")
        digest.update(np.asarray(encoded[i].target, dtype=np.int64).tobytes())
        digest.update(b"#")
    return digest.hexdigest()


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _precision(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: plain float32). ``auto``: bf16 (or fp16) on a GPU, fp32 on the CPU; ``bf16``
    also on a CPU, where native bfloat16 instructions (AVX512-BF16, AMX) make a step about 2x faster (measured
    on 2 cores: 25 s against 55 s for 8 verbalizer examples)."""
    if choice == "fp32" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if choice == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        raise ConfigError(f"precision '{choice}' needs a GPU; on {device.type} use fp32, bf16 or auto")
    return torch.float16


# ---- checkpoints ----------------------------------------------------------------------------------------
def _checkpoint_dirs(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (their state file written last), oldest first."""
    found = []
    root = out / CHECKPOINTS
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith("step-") and path.name[5:].isdigit() and (path / STATE_FILE).exists():
                found.append((int(path.name[5:]), path))
    return sorted(found)


def _save_checkpoint(out: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                     state: _State, meta: Mapping[str, Any], keep: int) -> Path:
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step}"
    staging = root / f".step-{state.step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(staging / WEIGHTS_FILE))
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"state.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_file(tensors, str(staging / OPTIMIZER_FILE))
    record = {
        "format_version": FORMAT_VERSION, **meta, "step": state.step, "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),  # its lr_lambdas are [None]: the schedule is rebuilt from the config
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": [asdict(r) for r in state.history], "evals": [asdict(e) for e in state.evals],
        "epochs": state.epochs, "seconds": state.seconds,
    }
    (staging / STATE_FILE).write_text(json.dumps(record))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for _, old in _checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint at step %d: %s", state.step, final)
    return final


def _load_checkpoint(path: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                     meta: Mapping[str, Any]) -> _State:
    record = load_json_record(path / STATE_FILE, what="checkpoint state")
    for key, value in meta.items():
        if record.get(key) != value:
            raise ConfigError(f"cannot resume from {path}: its '{key}' differs from this run's ({record.get(key)!r} "
                              f"vs {value!r}); resume with the same examples and settings, or start afresh")
    weights = load_file(str(path / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    tensors = load_file(str(path / OPTIMIZER_FILE))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": record["param_groups"]})
    scheduler.load_state_dict(record["scheduler"])
    if scaler is not None and record.get("scaler"):
        scaler.load_state_dict(record["scaler"])
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                              key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return _State(step=int(record["step"]), history=[StepRecord(**r) for r in record["history"]],
                  evals=[EvalRecord(**e) for e in record["evals"]], epochs=list(record["epochs"]),
                  seconds=float(record["seconds"]))


# ---- training -------------------------------------------------------------------------------------------
def train_lora(
    examples: InstructionSet | Sequence[Example],
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    config: LoraTrainConfig | Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[StepRecord], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune ``model`` (None: the pinned default; a folder, .gguf, hub id, or an earlier adapter folder)
    with LoRA on ``examples`` and write the adapter to ``out_dir``.

    Options (``LoraTrainConfig`` fields, given as ``config`` or keywords):
    - ``r``, ``alpha``, ``dropout``: LoRA rank, scaling numerator (alpha / r) and dropout;
      ``target_modules``: module names (default q_proj, v_proj, Llama-like models) or "all-linear".
    - ``lr``, ``weight_decay`` (AdamW), ``warmup_ratio`` (linear warm-up, then linear decay to 0),
      ``max_grad_norm`` (clipping; None: off).
    - ``epochs``; ``max_steps`` (optimizer steps; overrides epochs); ``batch_size`` (default 8 on a CPU, 32
      on a GPU) and ``grad_accum`` micro-batches per step; ``max_length``: longer examples are left out
      (counted in the result and the log).
    - ``seed``: LoRA initialisation, data order, dropout and the eval split.
    - ``eval_fraction`` of the examples (whole users, at most ``max_eval_examples``) is held out and its loss
      reported before training and after every epoch.
    - ``eos``: end every target with the end-of-turn token, so generation stops after the answer.
    - ``save_every`` steps a checkpoint (the newest ``keep_checkpoints`` kept); ``resume=True`` continues from
      the newest; ``overwrite=True`` replaces an earlier run in ``out_dir``.
    - ``device`` (auto: a GPU when there is one), ``precision`` (auto: bf16/fp16 autocast on a GPU, fp32 on
      a CPU; bf16 on a CPU with native bfloat16 is about 2x faster), ``num_threads`` (torch CPU threads while
      training; restored after).
    - ``gradient_checkpointing``: keep only each decoder layer's input and recompute the rest in the backward
      pass: activation memory falls by about the layer count, a step costs roughly one more forward pass, and
      the result is the same (dropout masks are replayed), so a run may be resumed with it on or off.

    ``callback`` gets every step's record (after its checkpoint, if any). Returns the loss history.
    """
    cfg = _config(config, options)
    with torch_threads(cfg.num_threads):
        return _train(examples, Path(out_dir), model, cfg, resume, overwrite, progress, callback)


def _train(examples: InstructionSet | Sequence[Example], out: Path, model: str | Path | None, cfg: LoraTrainConfig,
           resume: bool, overwrite: bool, progress: bool, callback: Callable[[StepRecord], None] | None,
           ) -> TrainResult:
    """The body of ``train_lora``, run under its thread setting."""
    from recllm.llm.hf import HFBackend

    device = pick_device(cfg.device)
    autocast_dtype = _precision(cfg.precision, device)
    items = list(examples)
    if not items:
        raise ConfigError("no examples to train on")
    _check_out_dir(out, resume, overwrite)
    start = time.perf_counter()
    backend = HFBackend(model, device=str(device), dtype="float32")
    batch_size = cfg.batch_size or (32 if device.type == "cuda" else 8)
    encoded, dropped = _encode(backend, items, cfg)
    train_rows, eval_rows = _split_eval(encoded, cfg.eval_fraction, cfg.max_eval_examples, cfg.seed)
    base = backend.model
    keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
    peft_model = _wrap(base, cfg)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in peft_model.parameters())
    steps_per_epoch = math.ceil(math.ceil(len(train_rows) / batch_size) / cfg.grad_accum)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, round(cfg.warmup_ratio * total)))
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    meta = {"config": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NEUTRAL},
            "base_model": _base_spec(model), "data": _fingerprint(encoded, train_rows),
            "eval": _fingerprint(encoded, eval_rows), "total_steps": total}
    state = _State()
    resumed_from = None
    if resume and _checkpoint_dirs(out):
        step, path = _checkpoint_dirs(out)[-1]
        state = _load_checkpoint(path, peft_model, optimizer, scheduler, scaler, meta)
        resumed_from = step
        log.info("resuming from %s (step %d of %d)", path, step, total)
    elif resume:
        log.info("resume asked, but %s has no checkpoint: starting from step 0", out)
    log.info("LoRA on %s (%s, %s): %d train / %d eval examples (%d too long, left out), %d steps, batch %d x %d, "
             "%d trainable of %d parameters", backend.model_name, device, autocast_dtype or "fp32", len(train_rows),
             len(eval_rows), dropped, total, batch_size, cfg.grad_accum, n_trainable, n_total)
    pad_id = int(backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else 0)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    def evaluate(epoch: int) -> None:
        if not eval_rows:
            return
        peft_model.eval()
        loss_sum, count = 0.0, 0
        with torch.no_grad(), autocast():
            for i in range(0, len(eval_rows), batch_size):
                batch = _batch([encoded[r] for r in eval_rows[i:i + batch_size]], pad_id, device)
                loss, n = _token_loss_sum(peft_model, batch, keeps_logits)
                loss_sum += float(loss)
                count += n
        state.evals.append(EvalRecord(state.step, epoch, loss_sum / max(count, 1)))
        log.info("eval loss after step %d: %.4f", state.step, state.evals[-1].loss)
        peft_model.train()

    run_start = time.perf_counter()
    seconds_before = state.seconds
    if state.step == 0:
        evaluate(0)
    peft_model.train()
    with training_progress("lora", total, done=state.step, enabled=progress, show_count=True) as advance:
        while state.step < total:
            epoch = state.step // steps_per_epoch  # 0-based
            # the data order depends only on (seed, epoch): a resumed run sees the same batches
            shuffled = [train_rows[i] for i in np.random.default_rng([cfg.seed, epoch]).permutation(len(train_rows))]
            batches = [shuffled[i:i + batch_size] for i in range(0, len(shuffled), batch_size)]
            first = (state.step - epoch * steps_per_epoch) * cfg.grad_accum
            for begin in range(first, len(batches), cfg.grad_accum):
                step_start = time.perf_counter()
                window = [[encoded[r] for r in rows] for rows in batches[begin:begin + cfg.grad_accum]]
                n_tokens = sum(len(e.target) for rows in window for e in rows)
                optimizer.zero_grad(set_to_none=True)
                total_loss = 0.0
                for rows in window:
                    batch = _batch(rows, pad_id, device)
                    with autocast():
                        loss, _ = _token_loss_sum(peft_model, batch, keeps_logits)
                    loss = loss / max(n_tokens, 1)
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                    total_loss += float(loss.detach())
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                lr = float(optimizer.param_groups[0]["lr"])
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                state.step += 1
                record = StepRecord(state.step, epoch + 1, total_loss, lr, n_tokens,
                                    sum(len(e) for rows in window for e in rows), time.perf_counter() - step_start)
                state.history.append(record)
                advance(f"loss {total_loss:.3f}")
                if state.step % cfg.log_every == 0 or state.step == total:
                    log.info("step %d/%d (epoch %d): loss %.4f, lr %.2e", state.step, total, epoch + 1, total_loss, lr)
                epoch_done = state.step % steps_per_epoch == 0 or state.step == total
                if epoch_done:
                    _close_epoch(state, epoch + 1)
                    evaluate(epoch + 1)
                if cfg.save_every is not None and state.step % cfg.save_every == 0:
                    state.seconds = seconds_before + time.perf_counter() - run_start
                    _save_checkpoint(out, peft_model, optimizer, scheduler, scaler, state, meta,
                                     cfg.keep_checkpoints)
                if callback is not None:
                    callback(record)
                if state.step >= total:
                    break
    state.seconds = seconds_before + time.perf_counter() - run_start
    result = TrainResult(out_dir=out, steps=state.step, history=state.history, epochs=state.epochs,
                         evals=state.evals, n_train=len(train_rows), n_eval=len(eval_rows), n_dropped=dropped,
                         seconds=state.seconds, device=str(device), precision=str(autocast_dtype or "fp32"),
                         trainable_params=n_trainable, total_params=n_total, resumed_from=resumed_from,
                         base_model=_base_spec(model))
    _write_output(out, peft_model, examples, cfg, result, backend.model_name, time.perf_counter() - start)
    return result


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is a file")
    earlier = out.is_dir() and ((out / TRAIN_MARKER).exists() or (out / CHECKPOINTS).exists())
    if earlier and not resume:
        if not overwrite:
            raise ConfigError(f"{out} already holds a training run; pass resume=True (--resume) to continue it "
                              f"or overwrite=True (--overwrite) to replace it")
        for name in (TRAIN_MARKER, ADAPTER_WEIGHTS, "adapter_config.json", NAMES_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _encode(backend: Any, items: Sequence[Example], cfg: LoraTrainConfig) -> tuple[list[_Encoded], int]:
    eos = backend.tokenizer.eos_token_id
    encoded, dropped = [], 0
    for i, example in enumerate(items):
        if not isinstance(example, Example):
            raise ConfigError(f"examples[{i}] must be an Example, got {type(example).__name__}")
        if not example.target:
            raise ConfigError(f"examples[{i}] ({example.task}, user {example.user}) has an empty target")
        prompt, target = backend.encode_pair(example.render(backend), example.target)
        if cfg.eos and eos is not None:
            target = [*target, int(eos)]
        if len(prompt) + len(target) > cfg.max_length:
            dropped += 1
            continue
        encoded.append(_Encoded(tuple(prompt), tuple(target), example.user))
    if dropped:
        log.warning("%d of %d examples are longer than max_length=%d tokens and were left out", dropped, len(items),
                    cfg.max_length)
    if not encoded:
        raise ConfigError(f"every example is longer than max_length={cfg.max_length} tokens; raise max_length or "
                          f"build examples with a shorter max_history")
    return encoded, dropped


def _wrap(base: Any, cfg: LoraTrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    if cfg.gradient_checkpointing:
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise ConfigError(f"{type(base).__name__} does not support gradient checkpointing; leave it off")
        # non-reentrant: gradients reach the LoRA weights although the frozen embeddings need none
        kwargs = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):  # the name since transformers 5.x
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        base.config.use_cache = False
    torch.manual_seed(cfg.seed)  # the LoRA A matrices are initialised randomly
    modules: Any = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    # peft annotates lora_alpha as int; a float scales the adapter the same way
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,  # type: ignore[arg-type]
                      target_modules=modules, bias="none", task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(base, lora)
    except ValueError as exc:
        raise ConfigError(f"LoRA target_modules {cfg.target_modules!r} do not fit this model: {exc}") from exc


def _close_epoch(state: _State, epoch: int) -> None:
    records = [r for r in state.history if r.epoch == epoch]
    tokens = sum(r.tokens for r in records)
    mean = sum(r.loss * r.tokens for r in records) / max(tokens, 1)
    state.epochs.append({"epoch": epoch, "steps": len(records), "train_loss": mean, "eval_loss": None})


def _write_output(out: Path, peft_model: Any, examples: InstructionSet | Sequence[Example], cfg: LoraTrainConfig,
                  result: TrainResult, base_name: str, wall: float) -> None:
    for epoch in result.epochs:  # each epoch's eval loss beside its train loss
        evals = [e.loss for e in result.evals if e.epoch == epoch["epoch"]]
        epoch["eval_loss"] = evals[-1] if evals else None
    peft_model.save_pretrained(str(out))
    tasks: dict[str, int] = {}
    for example in examples:
        tasks[example.task] = tasks.get(example.task, 0) + 1
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "base_model": result.base_model,
        "base_model_name": base_name,
        "tasks": tasks,
        "hyperparameters": cfg.model_dump(mode="json"),
        "result": result.to_dict(),
        "wall_seconds": round(wall, 2),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    if isinstance(examples, InstructionSet):
        record["instructions"] = examples.describe()
        record["naming"] = examples.config.naming
        if examples.names is not None:
            (out / NAMES_FILE).write_text(json.dumps(examples.names, indent=0))
    (out / TRAIN_MARKER).write_text(json.dumps(record, indent=1))
    log.info("LoRA adapter written to %s (%d steps, %.1f s)", out, result.steps, result.seconds)
