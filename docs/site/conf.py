"""Sphinx configuration of the course's website; `make site` (tools/build_site.py) stages the sources.

MyST-NB renders the notebooks with the outputs they carry (a real cpu-profile run, see
tools/build_site.py) and never executes them itself; MyST parses the Markdown pages with the same
GitHub-style heading anchors as GitHub, so the pitfalls page's links to notebook sections resolve.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = re.search(r'^Repository\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)

project = "Hands-on LoRA and QLoRA"
author = "the course's authors"
copyright = "the course's authors, Apache-2.0"  # noqa: A001 - Sphinx's name for it
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# MyST: $...$ and $$...$$ math, ::: fences, GitHub-style anchors on headings down to ###.
myst_enable_extensions = ["dollarmath", "colon_fence", "html_image"]
myst_heading_anchors = 4
myst_heading_anchors_html_ids = True

# MyST-NB: outputs as stored; stderr (warnings, progress) shown as it came. Widget views have no saved
# state in a test run, so their plain-text form is shown.
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "use_repository_button": True,
    "use_download_button": True,
    "show_toc_level": 2,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "path_to_docs": "",
}
html_last_updated_fmt = None
suppress_warnings = ["myst.header"]
