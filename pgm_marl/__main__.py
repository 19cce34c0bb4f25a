"""``python -m pgm_marl`` = the ``pgm-marl`` command."""
import sys

from .cli import main

sys.exit(main())
