"""``python -m ckpt_gui`` runs the same entry point as the ``ckpt-gui`` script."""

from __future__ import annotations

import sys

from ckpt_gui.cli import main

sys.exit(main())
