"""Config files loaded by path: configs/ are files that ml_collections reads, not a package."""

import importlib.util
import os
from types import ModuleType


def load(path: str) -> ModuleType:
    """The module of the Python file at `path`."""
    name = "cps_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(config_file: str, name: str) -> ModuleType:
    """configs/<name>.py, next to `config_file` (pass `__file__`)."""
    return load(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"))
