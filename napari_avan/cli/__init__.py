"""The ``napari-avan`` command line (docs/architecture.md, the command-line contract).

Every subcommand has ``--help``; exit code 0 on success, 2 on bad input with a
one-line reason on stderr. One module per subcommand (its parser and its run); heavy
modules are imported inside the subcommands so that ``napari-avan --help`` is quick.
"""

from __future__ import annotations

from napari_avan.cli._common import PROG
from napari_avan.cli._main import TORCH_COMMANDS, build_parser, main
from napari_avan.models.training_data import HOLDOUT_SEED, SYNTH_TRAIN_SEED, SYNTH_VAL_SEED

__all__ = [
    "HOLDOUT_SEED",
    "PROG",
    "SYNTH_TRAIN_SEED",
    "SYNTH_VAL_SEED",
    "TORCH_COMMANDS",
    "build_parser",
    "main",
]
