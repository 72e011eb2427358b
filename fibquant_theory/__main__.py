"""``python -m fibquant_theory`` runs the ``fibquant`` command."""

import sys

from .cli import main

sys.exit(main())
