"""Sphinx configuration for the sb3-qsm documentation (MyST Markdown pages, Read the Docs theme)."""

import os
import sys

# The package is normally installed (editable); the path makes the build work from a plain checkout too
sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_qsm", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

project = "sb3-qsm"
author = "sb3-qsm contributors"
copyright = "sb3-qsm contributors"
version = __version__
release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "myst_parser",
]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Docstrings use reST field lists (:param x:), which autodoc renders natively
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"

pygments_style = "sphinx"
html_theme = "sphinx_rtd_theme"
html_title = f"sb3-qsm {release}"
