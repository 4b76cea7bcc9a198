import sys

# First, before anything imports numpy: the command line owns its process and opts in to kprtrack's
# process-wide settings (OpenBLAS kernel choice, malloc reuse; see kprtrack/runtime.py).
from kprtrack.runtime import configure_process, install_problem

configure_process()
_problem = install_problem()  # `python -m kprtrack` from a checkout that was never installed
if _problem:
    print(f"kprtrack: {_problem}", file=sys.stderr)
    sys.exit(2)

from kprtrack.cli import main  # noqa: E402

sys.exit(main())
