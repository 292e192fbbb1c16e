"""One module per tab of the studio; each ``build_*_tab`` lays out its components and wires them to its services."""

from huvidpo.studio.tabs.generate import build_generate_tab
from huvidpo.studio.tabs.label import build_label_tab
from huvidpo.studio.tabs.train import build_train_tab

__all__ = ["build_generate_tab", "build_label_tab", "build_train_tab"]
