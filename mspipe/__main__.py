import sys

from mspipe.main import main

sys.exit(main())
