"""``python -m fibquant_theory`` runs the ``fibquant`` command."""

import sys

from fibquant_theory.cli.main import main

sys.exit(main())
