"""Sphinx configuration: the Markdown pages (MyST) and an API reference generated
from the docstrings. Build with ``make docs``; ``tests/test_docs.py`` builds it with
warnings as errors."""

project = "greenrt"
author = "the greenrt developers"
extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures show them; the docstrings say the rest
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]  # links to source files outside docs/
html_theme = "alabaster"
