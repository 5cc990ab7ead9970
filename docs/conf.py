# Sphinx configuration of the docs site. `make docs` runs docs/prepare.py (notebooks -> _proc/), then
# sphinx-build with this file on _proc/. Quarto cannot be installed offline; Sphinx, myst-nb and furo
# are plain PyPI packages that render the stored notebook outputs without executing anything.
project = "ml-project"
author = "ml-project developers"
copyright = "2026, ml-project developers"  # the footer names the copyright holder
extensions = ["myst_nb", "sphinx_copybutton"]
copybutton_exclude = ".linenos, .gp, .go"  # copy code, not prompts or outputs
nb_execution_mode = "off"  # outputs come from the committed notebooks (a real run)
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "ml-project"
html_static_path = ["_static"]
html_css_files = ["custom.css"]  # theme-like tables; wide outputs scroll in their block
html_show_sourcelink = False
html_copy_source = False
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
pygments_style = "friendly"
html_favicon = "favicon.svg"  # also spares every page a 404 for /favicon.ico
