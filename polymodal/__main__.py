"""``python -m polymodal``: the ``polymodal`` command line (:mod:`polymodal.cli`), e.g. under ``torchrun -m``."""

import sys

from polymodal.cli import main

if __name__ == "__main__":
    sys.exit(main())
