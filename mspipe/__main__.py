"""`python -m mspipe ...`: the same as the `mspipe` console script."""
import sys

from mspipe.main import main

sys.exit(main())
