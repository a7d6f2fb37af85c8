"""The ``hf`` backend: a causal language model run by transformers, on CPU or GPU.

Scoring reuses the key/value cache of the prompt: the prompt runs once, and all continuations are then
scored as one right-padded batch against that cache, instead of re-reading the prompt per candidate.

Tokenisation at the prompt/continuation boundary: the prompt and each continuation are tokenised
separately (tokens never merge across the boundary), identically in the reuse and no-reuse paths. BPE
tokenisers fold a word's leading space into its token (" Paris" is one token, "Paris" another), so write
continuations and labels with their leading space and the prompt without a trailing one. Trailing spaces of
the prompt are moved to the front of every continuation: "is " + "Paris" is scored as "is" + " Paris".
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import numpy as np
import torch
from pydantic import Field

from recllm.config import checked
from recllm.errors import ConfigError
from recllm.llm.base import (
    Completion,
    FinishReason,
    GenerationRequest,
    LLMError,
    LocalLLM,
    _check_prompt,
    _check_texts,
)
from recllm.llm.constrained import GrammarLogitsProcessor, compile_grammar, constraint_key, llguidance_tokenizer
from recllm.llm.prefix_cache import PrefixKVCache
from recllm.llm.resolve import CHATML_TEMPLATE, ResolvedModel, resolve_llm
from recllm.torch_runtime import pick_device

log = logging.getLogger(__name__)

T = TypeVar("T")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it, slower
    than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"``: float32 on CPU (the reference numbers), bfloat16 (or float16) on a GPU. ``"fast"``: as
    auto, except bfloat16 on a CPU that computes it natively (``cpu_computes_bfloat16``): the verbalizer 1.5x
    faster there with label scores within 0.21 and a Kendall tau of 0.98 to float32's, the likelihood re-ranker
    about 1.25x slower (docs/benchmarks.md: verbalizer speed, service load)."""
    if dtype == "fast" and device.type == "cpu" and cpu_computes_bfloat16():
        return torch.bfloat16
    if dtype in ("auto", "fast"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be auto, fast or one of {', '.join(DTYPES)}, got '{dtype}'")
    return DTYPES[dtype]


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """transformers' progress bars off while loading, then back as they were."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def merge_adapter(model: Any, adapter: str | Path) -> Any:
    """``model`` with the LoRA adapter in folder ``adapter`` applied and merged into its weights (peft), so the
    tuned model runs exactly like a plain one: no adapter layers left, same speed."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            tuned = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"could not apply the LoRA adapter in {adapter}: {exc}") from exc
    merged = tuned.merge_and_unload()
    log.info("applied and merged LoRA adapter %s", adapter)
    return merged


class HFBackend(LocalLLM):
    """A transformers causal LM; ``model`` is None (the pinned default), a folder, a ``.gguf`` file or a hub id,
    or a folder of a LoRA adapter trained by ``recllm.train.lora`` (its base model loads, then the adapter is
    merged in; ``adapters`` lists the adapter folders applied).

    ``score_batch_size`` continuations are scored per forward pass, ``generate_batch_size`` greedy requests
    decoded together. ``num_threads`` sets torch's (process-wide) CPU thread count when given.
    ``prefix_cache`` keeps the key/value caches of that many recent scoring prompts (0: none), so a prompt that
    begins like one of them reads only its new tokens (``recllm.llm.prefix_cache``).
    ``joint_scoring`` makes ``logprobs_many`` read several prompts in one padded pass and score all their
    continuations in the next (None: on a GPU only; on 2 CPU cores it was no faster than one prompt after
    another, 1.03x with a 95% interval of 0.93-1.12x, ``benchmarks/joint_scoring.py``). Models with
    sliding-window layers (Gemma-3) always score one prompt at a time, since padding would shift their windows.
    Output constrained by a JSON schema or a Lark grammar (``can_schema``, ``can_grammar``) is decoded through
    llguidance (``recllm.llm.constrained``): every token outside the grammar is masked, so the output follows it.
    """

    target_argument = "model"

    backend = "hf"

    @checked()
    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        score_batch_size: Annotated[int, Field(ge=1)] = 32,
        generate_batch_size: Annotated[int, Field(ge=1)] = 8,
        num_threads: Annotated[int, Field(ge=1)] | None = None,
        prefix_cache: Annotated[int, Field(ge=0)] = 4,
        joint_scoring: bool | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        resolved: ResolvedModel = resolve_llm(model)
        super().__init__(resolved.name)
        self.source = resolved.source
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.score_batch_size = score_batch_size
        self.generate_batch_size = generate_batch_size
        self.prefix_cache = PrefixKVCache(prefix_cache)
        start = time.perf_counter()
        try:
            with quiet_progress_bars():  # a sub-second load needs no bar on the user's terminal
                self.tokenizer = AutoTokenizer.from_pretrained(resolved.source, local_files_only=resolved.local)
                loaded = AutoModelForCausalLM.from_pretrained(
                    resolved.source, dtype=self.dtype, local_files_only=resolved.local)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load LLM '{resolved.source}' with transformers: {exc}") from exc
        for adapter in resolved.adapters:
            loaded = merge_adapter(loaded, adapter)
        self.adapters = resolved.adapters
        # Any: transformers' generic model types make mypy reject .to() and .generate() on it
        self.model: Any = cast(Any, loaded)
        self.model.to(self.device).eval()
        self.load_seconds = time.perf_counter() - start
        if not getattr(self.tokenizer, "chat_template", None):
            log.warning("tokenizer of %s has no chat template; using ChatML", resolved.name)
            self.tokenizer.chat_template = CHATML_TEMPLATE
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self._eos_ids = self._collect_eos_ids()
        self._ll_tokenizer: Any = None
        forward_params = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward_params
        # recent transformers (5.24 here) name the key/value cache ``cache`` (``past_key_values`` is deprecated and
        # warns on every call); older releases only know ``past_key_values``
        self._cache_name = "cache" if "cache" in forward_params else "past_key_values"
        sliding = "sliding_attention" in (getattr(self.model.config, "layer_types", None) or ())
        wanted = self.device.type != "cpu" if joint_scoring is None else joint_scoring
        self.joint_scoring = wanted and not sliding
        log.info("loaded %s on %s (%s) in %.2f s", resolved.name, self.device, self.dtype, self.load_seconds)

    # ---- capabilities and helpers -----------------------------------------------------------------
    @property
    def cache_identity(self) -> str:
        """The model, plus its precision when that is not float32 (cached float32 answers stay valid)."""
        if self.dtype == torch.float32:
            return self.model_name
        return f"{self.model_name} [{str(self.dtype).removeprefix('torch.')}]"

    @property
    def can_schema(self) -> bool:
        return True

    @property
    def can_grammar(self) -> bool:
        return True

    @property
    def context_length(self) -> int | None:
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if value else None

    def count_tokens(self, text: str) -> int:
        return len(self._encode_prompt(text)) if text else 0

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        request = GenerationRequest.chat(messages)  # validates roles and contents
        return str(self.tokenizer.apply_chat_template(
            list(request.messages or ()), add_generation_prompt=add_generation_prompt, tokenize=False))

    def _collect_eos_ids(self) -> list[int]:
        ids: set[int] = set()
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return sorted(ids)

    def _encode_prompt(self, text: str) -> list[int]:
        """Prompt ids; the tokenizer's special tokens (e.g. BOS) are added unless the text already has them."""
        bos = self.tokenizer.bos_token
        add = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add)["input_ids"])

    def encode_pair(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of ``prompt`` and of ``continuation`` after it, split at the boundary exactly as scoring
        splits them (trailing prompt spaces move into the continuation); training uses this so that tuned
        answers are the very tokens ``logprobs`` and ``next_token_logprobs`` later read."""
        prompt_ids, spaces = self._split_boundary(prompt)
        return prompt_ids, self._encode_piece(spaces + continuation) if (spaces + continuation) else []

    def _encode_piece(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _token_names(self, ids: list[int]) -> list[str]:
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(ids)]

    @property
    def scores_prompts_jointly(self) -> bool:
        return self.joint_scoring

    def _forward(self, keep: int | torch.Tensor | None = None, **inputs: Any) -> Any:
        """The model's outputs, with logits only for the last ``keep`` positions (an int) or for the positions
        a tensor ``keep`` lists (the same in every row)."""
        if keep is not None and self._keeps_logits:
            inputs["logits_to_keep"] = keep
        out = self.model(**inputs)
        if keep is not None and not self._keeps_logits:
            out.logits = out.logits[:, -keep:] if isinstance(keep, int) else out.logits[:, keep]
        return out

    # ---- scoring ----------------------------------------------------------------------------------
    def logprobs(self, prompt: str, continuations: Sequence[str], *, reuse_prefix: bool = True) -> np.ndarray:
        """Sum of token log-probabilities of each continuation after ``prompt``. ``reuse_prefix=True`` runs the
        prompt once and scores the continuations against its key/value cache; False re-reads the prompt with
        every continuation (slower; kept to measure the speed-up). Both give the same numbers."""
        if reuse_prefix:
            return super().logprobs(prompt, continuations)
        texts = _check_texts(continuations, "continuations", allow_empty_text=True)
        if not texts:
            return np.zeros(0, dtype=np.float64)
        return self._check_scores(self._score(_check_prompt(prompt), texts, reuse_prefix=False), len(texts))

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        return self._score(prompt, continuations, reuse_prefix=True)

    def _score(self, prompt: str, continuations: list[str], *, reuse_prefix: bool) -> np.ndarray:
        start = time.perf_counter()
        prompt_ids, conts = self._encode_job(prompt, continuations)
        scores = np.zeros(len(conts), dtype=np.float64)
        order = sorted((i for i, c in enumerate(conts) if c), key=lambda i: len(conts[i]))
        with torch.inference_mode():
            if not order:  # only empty continuations: each scores 0 without running the model
                pass
            elif reuse_prefix:
                self._score_reusing_prefix(prompt_ids, conts, order, scores)
            else:
                self._score_from_scratch(prompt_ids, conts, order, scores)
        scored = sum(len(c) for c in conts)
        self.usage.record_scoring(prompt_tokens=len(prompt_ids) * (1 if reuse_prefix else len(conts)),
                                  scored_tokens=scored, seconds=time.perf_counter() - start)
        return scores

    def _encode_job(self, prompt: str, continuations: list[str]) -> tuple[list[int], list[list[int]]]:
        """The prompt's ids and each continuation's (after the prompt's trailing spaces), the length checked."""
        prompt_ids, spaces = self._split_boundary(prompt)
        conts = [self._encode_piece(spaces + c) if (spaces + c) else [] for c in continuations]
        self._check_length(len(prompt_ids) + max(len(c) for c in conts), "prompt plus longest continuation")
        return prompt_ids, conts

    def _logprobs_many(self, jobs: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        if not self.joint_scoring or len(jobs) < 2:
            return super()._logprobs_many(jobs)
        start = time.perf_counter()
        encoded = [self._encode_job(prompt, continuations) for prompt, continuations in jobs]
        with torch.inference_mode():
            scores = self._score_jointly(encoded)
        self.usage.record_scoring(prompt_tokens=sum(len(p) for p, _ in encoded),
                                  scored_tokens=sum(len(c) for _, conts in encoded for c in conts),
                                  seconds=time.perf_counter() - start)
        return scores

    def _score_jointly(self, encoded: list[tuple[list[int], list[list[int]]]]) -> list[np.ndarray]:
        """All prompts in one right-padded pass (its cache kept), then every continuation of every prompt in
        batches of ``score_batch_size`` rows, each row reading its own prompt's cache with the padding masked."""
        lengths = [len(prompt) for prompt, _ in encoded]
        prompt_ids, prompt_mask = self._right_padded([prompt for prompt, _ in encoded], max(lengths))
        ends = sorted({n - 1 for n in lengths})
        out = self._forward(keep=torch.tensor(ends, device=self.device), input_ids=prompt_ids,
                            attention_mask=prompt_mask, use_cache=True)
        first = torch.log_softmax(out.logits.float(), dim=-1).cpu()  # (prompts, distinct ends, vocabulary)
        cache = getattr(out, self._cache_name)
        scores = [np.zeros(len(conts), dtype=np.float64) for _, conts in encoded]
        rows = sorted(((u, i) for u, (_, conts) in enumerate(encoded) for i, c in enumerate(conts) if c),
                      key=lambda row: len(encoded[row[0]][1][row[1]]))
        for chunk in _chunks(rows, self.score_batch_size):
            conts = [encoded[u][1][i] for u, i in chunk]
            total = torch.tensor([first[u, ends.index(lengths[u] - 1), c[0]].item()
                                  for (u, _), c in zip(chunk, conts, strict=True)], dtype=torch.float64)
            width = max(len(c) for c in conts) - 1  # the last token of each continuation is not fed
            if width > 0:
                users = torch.tensor([u for u, _ in chunk], device=self.device)
                rows_cache = copy.deepcopy(cache)
                rows_cache.batch_select_indices(users)
                ids, mask = self._right_padded([c[:-1] for c in conts], width)
                attention = torch.cat([prompt_mask[users], mask], dim=1)
                positions = torch.arange(width, device=self.device).unsqueeze(0) + \
                    torch.tensor([lengths[u] for u, _ in chunk], device=self.device).unsqueeze(1)
                logits = self._forward(input_ids=ids, attention_mask=attention, position_ids=positions,
                                       use_cache=True, **{self._cache_name: rows_cache}).logits
                total += self._gather(logits, [c[1:] for c in conts], width)
            for (u, i), value in zip(chunk, total.tolist(), strict=True):
                scores[u][i] = value
        return scores

    def _read_prompt(self, prompt_ids: list[int], *, need_cache: bool) -> tuple[torch.Tensor, Any, bool]:
        """The prompt through the model: log-probabilities of the next token (float32, on the CPU), the key/value
        cache covering the prompt (None unless ``need_cache`` or the prefix cache keeps it), and whether that
        cache is shared with the prefix cache (copy it before extending it). Tokens a kept prompt shares with
        this one are not read again; an exact repeat reads none."""
        kept = self.prefix_cache.entries > 0
        reuse = self.prefix_cache.lookup(prompt_ids) if kept else None
        if reuse is not None and reuse.last is not None:
            return reuse.last, reuse.cache, True
        shared = reuse.shared if reuse is not None else 0
        inputs: dict[str, Any] = {"input_ids": torch.tensor([prompt_ids[shared:]], device=self.device),
                                  "use_cache": need_cache or kept}
        if reuse is not None and reuse.cache is not None:
            inputs[self._cache_name] = reuse.cache
            inputs["position_ids"] = torch.arange(shared, len(prompt_ids), device=self.device).unsqueeze(0)
        out = self._forward(keep=1, **inputs)
        last = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
        cache = getattr(out, self._cache_name) if (need_cache or kept) else None
        if kept:
            self.prefix_cache.store(prompt_ids, cache, last)
        return last, cache, kept

    def _score_reusing_prefix(self, prompt_ids: list[int], conts: list[list[int]], order: list[int],
                              scores: np.ndarray) -> None:
        n_prompt = len(prompt_ids)
        first, prefix_cache, shared = self._read_prompt(prompt_ids, need_cache=True)
        chunks = list(_chunks(order, self.score_batch_size))
        for number, chunk in enumerate(chunks):
            width = max(len(conts[i]) for i in chunk) - 1  # the last token of each continuation is not fed
            total = torch.tensor([first[conts[i][0]].item() for i in chunk], dtype=torch.float64)
            if width > 0:
                ids, mask = self._right_padded([conts[i][:-1] for i in chunk], width)
                # the batch extends the cache in place: copy it unless no later batch and no later prompt needs it
                last = number == len(chunks) - 1 and not shared
                cache = prefix_cache if last else copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(chunk))
                attention = torch.cat([torch.ones((len(chunk), n_prompt), dtype=mask.dtype, device=self.device),
                                       mask], dim=1)
                positions = (torch.arange(width, device=self.device) + n_prompt).unsqueeze(0).expand(len(chunk), -1)
                logits = self._forward(input_ids=ids, attention_mask=attention, position_ids=positions,
                                       use_cache=True, **{self._cache_name: cache}).logits
                total += self._gather(logits, [conts[i][1:] for i in chunk], width)
            scores[chunk] = total.numpy()

    def _score_from_scratch(self, prompt_ids: list[int], conts: list[list[int]], order: list[int],
                            scores: np.ndarray) -> None:
        for chunk in _chunks(order, self.score_batch_size):
            longest = max(len(conts[i]) for i in chunk)
            width = len(prompt_ids) + longest - 1
            ids, mask = self._right_padded([prompt_ids + conts[i][:-1] for i in chunk], width)
            # logits at positions n_prompt-1 ... predict the continuation tokens: the last `longest` positions
            logits = self._forward(keep=longest, input_ids=ids, attention_mask=mask).logits
            scores[chunk] = self._gather(logits, [conts[i] for i in chunk], longest).numpy()

    def _right_padded(self, rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[r, :len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _gather(logits: torch.Tensor, targets: list[list[int]], width: int) -> torch.Tensor:
        """Sum over rows of log p(targets[r][j]) read at logits[r, j]; padding positions are ignored."""
        logp = torch.log_softmax(logits[:, :width].float(), dim=-1)
        index = torch.zeros((len(targets), width), dtype=torch.long)
        valid = torch.zeros((len(targets), width), dtype=torch.bool)
        for r, row in enumerate(targets):
            index[r, :len(row)] = torch.tensor(row, dtype=torch.long)
            valid[r, :len(row)] = True
        picked = logp.gather(-1, index.to(logp.device).unsqueeze(-1)).squeeze(-1).double().cpu()
        return torch.where(valid, picked, torch.zeros_like(picked)).sum(dim=1)

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        start = time.perf_counter()
        prompt_ids, spaces = self._split_boundary(prompt)
        label_ids = self._label_ids(tokens, spaces)
        if label_ids is None:
            return self._logprobs(prompt, tokens)
        with torch.inference_mode():
            logp = self._read_prompt(prompt_ids, need_cache=False)[0].double()
        self.usage.record_scoring(prompt_tokens=len(prompt_ids), scored_tokens=len(tokens),
                                  seconds=time.perf_counter() - start)
        return logp[label_ids].numpy()

    # ---- generation -------------------------------------------------------------------------------
    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        encoded = [self._encode_request(r) for r in requests]
        results: list[Completion | None] = [None] * len(requests)
        for group in self._batches(requests, encoded):
            request = requests[group[0]]
            seeded = request.seed is not None and not request.greedy
            with self._seeded(request.seed) if seeded else contextlib.nullcontext():
                for index, completion in zip(group, self._generate_batch(request, [encoded[i] for i in group]),
                                             strict=True):
                    results[index] = completion
        return [c for c in results if c is not None]

    def _encode_request(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            ids = self._encode_piece(self.render_chat(request.messages))
        else:
            ids = self._encode_prompt(request.prompt or "")
        if not ids:
            raise LLMError("generation prompt has no tokens")
        self._check_length(len(ids), "generation prompt")
        return ids

    def _batches(self, requests: list[GenerationRequest], encoded: list[list[int]]) -> Iterator[list[int]]:
        """Groups of request indices decoded together: equal parameters, similar lengths. A seeded sampled
        request runs alone, so its output does not depend on what else is in the call."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            alone = r.seed is not None and not r.greedy
            key = (r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed, constraint_key(r), i if alone else None)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            members.sort(key=lambda i: len(encoded[i]))
            yield from _chunks(members, self.generate_batch_size)

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed or 0)
            yield

    def _generate_batch(self, request: GenerationRequest, rows: list[list[int]]) -> list[Completion]:
        from transformers import GenerationConfig

        start = time.perf_counter()
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):  # left padding: every prompt ends where generation starts
            ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row):] = 1
        params: dict[str, Any] = {"max_new_tokens": request.max_new_tokens, "eos_token_id": self._eos_ids,
                                  "pad_token_id": self._pad_id}
        if request.greedy:
            params["do_sample"] = False
        else:
            params.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
        extra: dict[str, Any] = {}
        if request.stop:
            params["stop_strings"] = list(request.stop)
            extra["tokenizer"] = self.tokenizer
        if constraint_key(request) is not None:
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList([GrammarLogitsProcessor(
                self._grammar_tokenizer(), compile_grammar(request), len(rows), width)])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      generation_config=GenerationConfig(**params), **extra)
        completions = [self._finish(request, len(row), out[r, width:].tolist()) for r, row in enumerate(rows)]
        self.usage.record_generation(requests=len(rows), prompt_tokens=sum(len(r) for r in rows),
                                     generated_tokens=sum(c.completion_tokens for c in completions),
                                     seconds=time.perf_counter() - start)
        return completions

    def _grammar_tokenizer(self) -> Any:
        """llguidance's view of the tokenizer (built once: it reads the whole vocabulary)."""
        if self._ll_tokenizer is None:
            n_vocab = int(self.model.get_output_embeddings().weight.shape[0])
            self._ll_tokenizer = llguidance_tokenizer(self.tokenizer, n_vocab, self._eos_ids)
        return self._ll_tokenizer

    def _finish(self, request: GenerationRequest, n_prompt: int, new: list[int]) -> Completion:
        eos = set(self._eos_ids)
        end = next((j for j, t in enumerate(new) if t in eos), None)
        produced = new if end is None else new[:end]
        while produced and produced[-1] == self._pad_id:  # a row stopped by a stop string is padded after it
            produced = produced[:-1]
        text = str(self.tokenizer.decode(produced, skip_special_tokens=True))
        finish: FinishReason = "stop" if end is not None else "length"
        cut = min((p for p in (text.find(s) for s in request.stop) if p >= 0), default=None)
        if cut is not None:
            text, finish = text[:cut], "stop"
        n_generated = len(produced) + (1 if end is not None else 0)
        return Completion(text=text, finish_reason=finish, prompt_tokens=n_prompt, completion_tokens=n_generated)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
