"""Pre-stage a profile's models and data sets for a classroom, then verify them offline.

On a machine with internet (and HF_TOKEN for gated models):

    python tools/stage_cache.py --profile t4 --dest /srv/course-cache          # plan, sizes, confirm
    python tools/stage_cache.py --profile t4 --dest /srv/course-cache --yes    # no question asked
    python tools/stage_cache.py --dest /srv/course-cache --verify              # checksums only

The directory gets the Hugging Face cache layout under ``hf/`` and the ``COURSE_DATA_DIR`` layout
under ``data/``, plus ``MANIFEST.sha256``. Learners' machines then run the notebooks offline with

    export HF_HOME=/srv/course-cache/hf COURSE_DATA_DIR=/srv/course-cache/data HF_HUB_OFFLINE=1

``make gpu-check`` needs no model and no data (it builds the real architectures from the configs the
course ships), only torch, transformers, peft, accelerate and bitsandbytes. A CUDA image for LLM work
usually has the first four (with a CUDA build of torch, which must not be replaced), rarely
bitsandbytes; ``--gpu-check`` stages that wheel, at the version the course is tested with, for an
offline GPU box (its other dependencies, numpy and packaging, are on every such image):

    python tools/stage_cache.py --gpu-check --dest /srv/course-cache   # wheels/bitsandbytes-*.whl
    # on the GPU box, with a copy of this repository:
    pip install --no-index --find-links /srv/course-cache/wheels bitsandbytes
    python tools/gpu_check.py --out gpu_check.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Data sets the notebooks read from COURSE_DATA_DIR: local file -> how to fetch it.
DATASETS = {
    "gsm8k/train.jsonl": {"hub": "openai/gsm8k", "config": "main", "split": "train"},
    "gsm8k/test.jsonl": {"hub": "openai/gsm8k", "config": "main", "split": "test"},
    "guanaco/train.jsonl": {"hub": "mlabonne/guanaco-llama2-1k", "config": None, "split": "train"},
    "huanhuan.json": {"url": "https://raw.githubusercontent.com/datawhalechina/self-llm/master/dataset/huanhuan.json"},
}
MANIFEST = "MANIFEST.sha256"
# What gpu-check needs that a CUDA image for LLM work rarely has (it has torch, transformers, peft,
# accelerate).
GPU_CHECK_PACKAGES = ("bitsandbytes",)
# The GPU boxes the course meets (Colab, Kaggle, cloud images): Linux x86-64 with glibc >= 2.28. pip takes
# --platform tags literally, so the older manylinux tags a wheel may carry (bitsandbytes: 2_24) are listed.
GPU_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                 "manylinux2014_x86_64")
# Files a model repo may hold that the course never loads (original checkpoints, GGUF copies).
IGNORE = ["*.pth", "original/*", "*.gguf"]


def plan(profile_name: str) -> dict:
    """Return the models (Hub ids) and data files a profile needs. No network.

    Each role's model, and its pre-quantized NF4 copy where the registry has one (the NF4-only lessons
    download it): the rows of ``course_utils.registry.MODELS`` the profile uses.
    """
    from course_utils.machinery.profiles import PROFILES
    from course_utils.registry import ROLES, nf4_source

    if profile_name not in PROFILES:
        raise SystemExit(f"unknown profile {profile_name!r}; choose from {', '.join(PROFILES)}")
    profile = PROFILES[profile_name]
    models = {profile.model_id(role) for role in ROLES}
    models |= {nf4_source(m) for m in models}
    hub_models = sorted(m for m in models if not m.startswith("course:"))
    return {"models": hub_models, "data": sorted(DATASETS) if hub_models else []}


def pinned(packages, constraints: Path = ROOT / "constraints.txt") -> list[str]:
    """``name==version`` for each package, at the version constraints.txt pins."""
    from tools.colab_resolve import tested_pins_of

    pins = tested_pins_of(constraints)
    missing = [p for p in packages if p not in pins]
    if missing:
        raise SystemExit(f"constraints.txt pins no version of {', '.join(missing)}")
    return [f"{p}=={pins[p]}" for p in packages]


def gpu_check_download(dest: Path, python_version: str = "3.12") -> list[str]:
    """The pip command that stages gpu-check's wheel (no dependencies: the image has torch and numpy)."""
    return [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", *[a for tag in GPU_PLATFORMS for a in ("--platform", tag)],
            "--python-version", python_version,
            "--dest", str(dest / "wheels"), *pinned(GPU_CHECK_PACKAGES)]


def stage_gpu_check(dest: Path, python_version: str) -> int:
    import subprocess

    cmd = gpu_check_download(dest, python_version)
    print("staging make gpu-check's wheels:\n  " + " ".join(cmd[1:]))
    if subprocess.run(cmd, check=False).returncode:
        print("pip could not download them: this step needs PyPI (run it where the internet is)")
        return 1
    wheels = sorted((dest / "wheels").glob("*.whl"))
    for w in wheels:
        print(f"  {w.name:70s} {w.stat().st_size / 1e6:6.1f} MB")
    print(f"\non the GPU box (python {python_version}, with torch, transformers, peft, accelerate and a copy "
          f"of this repository):\n"
          f"  pip install --no-index --find-links {dest / 'wheels'} {' '.join(GPU_CHECK_PACKAGES)}\n"
          f"  python tools/gpu_check.py --out gpu_check.json")
    return 0


def sha256(path: Path) -> str:
    """Hash a file in 1 MiB chunks (model shards are several GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(dest: Path) -> Path:
    """Record the sha256 of every staged file (blobs of the HF cache and data files)."""
    lines = []
    for path in sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.name == MANIFEST or ".locks" in path.parts:
            continue
        lines.append(f"{sha256(path)}  {path.relative_to(dest)}")
    out = dest / MANIFEST
    out.write_text("\n".join(lines) + "\n")
    return out


def verify(dest: Path) -> list[str]:
    """Return the problems found: files missing or changed since the manifest was written."""
    manifest = dest / MANIFEST
    if not manifest.exists():
        return [f"{manifest} is missing: stage the cache first"]
    problems = []
    for line in manifest.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        path = dest / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
        elif sha256(path) != digest:
            problems.append(f"checksum mismatch: {rel}")
    return problems


def model_sizes(repo_ids: list[str]) -> dict[str, int]:
    """Ask the Hub for each model's download size in bytes (weights and tokenizer files)."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    api, sizes = HfApi(), {}
    for repo in repo_ids:
        info = api.model_info(repo, files_metadata=True)
        sizes[repo] = sum(f.size or 0 for f in info.siblings
                          if not any(fnmatch(f.rfilename, pat) for pat in IGNORE))
    return sizes


def stage_models(repo_ids: list[str], dest: Path) -> None:
    from huggingface_hub import snapshot_download

    for repo in repo_ids:
        print(f"downloading {repo} ...")
        snapshot_download(repo, cache_dir=dest / "hf" / "hub", ignore_patterns=IGNORE)


def stage_data(files: list[str], dest: Path) -> None:
    from datasets import load_dataset

    from course_utils.data import write_jsonl

    for rel in files:
        spec, out = DATASETS[rel], dest / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if "url" in spec:
            print(f"downloading {spec['url']} ...")
            with urllib.request.urlopen(spec["url"], timeout=60) as r:  # noqa: S310 - fixed https URL
                records = json.loads(r.read().decode("utf-8"))
            out.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        else:
            ds = load_dataset(spec["hub"], spec["config"], split=spec["split"])
            write_jsonl(list(ds), out)
        print(f"  {rel}: {out.stat().st_size / 1e6:.1f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="t4", help="cpu, t4 or a100 (default t4)")
    ap.add_argument("--dest", type=Path, required=True, help="directory to stage into")
    ap.add_argument("--yes", action="store_true", help="download without asking")
    ap.add_argument("--verify", action="store_true", help="only check the staged files' checksums")
    ap.add_argument("--gpu-check", action="store_true",
                    help="stage the wheels make gpu-check needs on an offline GPU box (no models)")
    ap.add_argument("--python-version", default="3.12", help="the GPU box's Python (for --gpu-check)")
    args = ap.parse_args(argv)
    dest = args.dest.expanduser().resolve()
    if args.gpu_check:
        return stage_gpu_check(dest, args.python_version)
    if args.verify:
        problems = verify(dest)
        print("\n".join(problems) if problems else f"{dest}: every file matches {MANIFEST}")
        return 1 if problems else 0
    todo = plan(args.profile)
    if not todo["models"]:
        print(f"profile {args.profile!r} needs nothing from the Hub: its models ship in PyPI wheels.")
        return 0
    from course_utils.memory import checkpoint_gb

    sizes = model_sizes(todo["models"])
    for repo, size in sizes.items():
        predicted = checkpoint_gb(repo)  # the course's estimate from the shipped config, for comparison
        course = f" (the course predicts {predicted:.2f} GB)" if predicted is not None else ""
        print(f"  {repo:45s} {size / 1e9:6.2f} GB{course}")
    print(f"  {'data sets (' + ', '.join(todo['data']) + ')':45s}   < 0.1 GB")
    print(f"total about {sum(sizes.values()) / 1e9:.1f} GB into {dest}")
    if not args.yes and input("download? [y/N] ").strip().lower() != "y":
        return 1
    stage_models(todo["models"], dest)
    stage_data(todo["data"], dest)
    write_manifest(dest)
    problems = verify(dest)
    if problems:
        print("\n".join(problems))
        return 1
    print(f"\nstaged and verified. On each learner's machine:\n"
          f"  export HF_HOME={dest / 'hf'} COURSE_DATA_DIR={dest / 'data'} HF_HUB_OFFLINE=1\n"
          f"  export COURSE_PROFILE={args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
