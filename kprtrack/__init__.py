"""kprtrack: multi-person pose tracking with Keypoint Promptable Re-Identification (KPRTrack).

Importing it has no side effects on the process (no environment variables, no allocator settings):
those are opt-in, see ``kprtrack.runtime.configure_process`` (the command line calls it).
``kprtrack.tracker``, ``kprtrack.reid`` and ``kprtrack.configs`` live at the repository's top level
(tracker/, reid/, configs/) and are mapped into this package by the install (``pip install -e .``
for a checkout). Kept import-light on purpose: ``kprtrack.tracker`` must be usable without Hydra,
torch or I/O.
"""

__version__ = "0.1.0"
