"""``python -m napari_avan.cli``: the same as the ``napari-avan`` command."""

import sys

from napari_avan.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
