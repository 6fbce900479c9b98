"""``python -m scale_graph.cli`` runs the ``scale`` command."""

import sys

from scale_graph.cli import main

sys.exit(main())
