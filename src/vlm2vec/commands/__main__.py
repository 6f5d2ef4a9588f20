"""`python -m vlm2vec.commands <command> ...`, the same as the `vlm2vec` script."""

import sys

from . import main

sys.exit(main())
