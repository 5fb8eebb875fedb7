"""The headless layers must not load napari, Qt or magicgui.

See docs/architecture.md, layers and imports.
"""

from __future__ import annotations

import json
import subprocess
import sys

GUI_MODULES = ("napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6")
HEADLESS = (
    "napari_avan",
    "napari_avan.types",
    "napari_avan.core",
    "napari_avan.core.synth",
    "napari_avan.core.tables",
    "napari_avan.core.metrics",
    "napari_avan.core.geometry",
    "napari_avan.core.clefts",
    "napari_avan.core.partners",
    "napari_avan.core.session",
    "napari_avan.core.thumbnails",
    "napari_avan.models.partners",
    "napari_avan.models.networks",
    "napari_avan.models.checkpoint",
    "napari_avan.models.device",
    "napari_avan.models.inference",
    "napari_avan.models.detect",
    "napari_avan.models.assign",
    "napari_avan.io",
    "napari_avan.models",
    "napari_avan.bulk",
    "napari_avan.cli",
)


def _loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_headless_modules_load_no_gui() -> None:
    loaded = _loaded_after_import(HEADLESS)
    assert "napari_avan.cli" in loaded  # the check itself ran
    gui = sorted(m for m in loaded if m.split(".")[0] in GUI_MODULES)
    assert gui == [], f"headless modules pulled in GUI packages: {gui[:10]}"


def test_package_import_is_cheap() -> None:
    loaded = _loaded_after_import(("napari_avan", "napari_avan.types"))
    heavy = sorted(m for m in loaded if m.split(".")[0] in {"torch", "zarr", "dask", "h5py"})
    assert heavy == []


def test_cli_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "napari_avan.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "synth" in out.stdout and "evaluate" in out.stdout


def test_core_never_loads_torch() -> None:
    import pkgutil

    import napari_avan.core

    core = tuple(
        f"napari_avan.core.{m.name}" for m in pkgutil.iter_modules(napari_avan.core.__path__)
    )
    loaded = _loaded_after_import(core)
    assert "napari_avan.core.session.session" in loaded and "napari_avan.core.partners" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] == "torch") == []
