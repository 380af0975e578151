"""MkDocs hooks: two pages are generated on every build, so neither can drift from its source.

- ``index.md``, the home page, is the README with its links re-rooted into the site.
- ``reference/config.md`` is the configuration reference, read off ``conf/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from ssd.config_reference import reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
REFERENCE_PAGE = "reference/config.md"


def home_page(readme: str) -> str:
    """The README as the site's home: links into docs/ made site-relative, the paragraph that
    points from the README to the site dropped, the reference row linked."""
    text = re.sub(r"\n\*\*Documentation:\*\*.*?\n\n", "\n", readme, count=1, flags=re.S)
    text = text.replace("](docs/", "](")
    return text.replace("| Configuration reference |",
                        f"| [Configuration reference]({REFERENCE_PAGE}) |")


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", content=home_page(README.read_text())))
    files.append(File.generated(config, REFERENCE_PAGE, content=reference_markdown()))
    return files
