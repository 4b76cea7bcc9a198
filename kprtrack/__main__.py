import sys

from kprtrack.cli import main

sys.exit(main())
