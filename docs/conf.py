"""Sphinx configuration for the VideoSys docs (built by ``nox -s docs`` with warnings as errors)."""

project = "VideoSys"
author = "VideoSys developers"
copyright = "2026, VideoSys developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_mock_imports = ["colossalai", "flash_attn"]
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
