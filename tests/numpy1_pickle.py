"""Write checkpoints exactly as ``torch.save`` writes them under numpy 1.x, from a numpy 2 process.

Published torchreid (KPR), mmpose and YOLOX checkpoints were pickled under numpy 1.x: their numpy
scalars and arrays are ``numpy.core.multiarray.scalar`` / ``_reconstruct`` globals. numpy 2 moved
that module to ``numpy._core``, so a plain ``torch.save`` here would write the new names and hide
the loading problem. This pickler writes the old module names; everything else is the standard
pure-Python pickler. ``tests/fixtures/numpy1/`` holds files made by a real numpy 1.26 process
(``tools/make_numpy1_fixtures.py``), and ``test_weights.py`` checks that both produce the same
pickle bytes for the same object.
"""
from __future__ import annotations

import pickle
import types

import torch

_NEW, _OLD = "numpy._core", "numpy.core"


class Numpy1Pickler(pickle._Pickler):  # the pure-Python pickler: its save_global can be overridden
    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or ""
        if module == _NEW or module.startswith(_NEW + "."):
            qualified = name or obj.__qualname__
            old = _OLD + module[len(_NEW):]
            self.write(pickle.GLOBAL + f"{old}\n{qualified}\n".encode("utf-8"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _dump(obj, file, protocol=2):
    Numpy1Pickler(file, protocol).dump(obj)


# torch.save takes a pickle module: its Pickler writes the zip format's pickle, the legacy
# (pre-1.6, e.g. the original HRNet release) format also calls its dump.
numpy1_pickle_module = types.SimpleNamespace(Pickler=Numpy1Pickler, dump=_dump, __name__="numpy1_pickle")


def save_numpy1(obj, path, legacy_format: bool = False) -> None:
    """``torch.save`` as a numpy 1.x process would write ``obj`` (``legacy_format``: as torch < 1.6 did)."""
    torch.save(obj, path, pickle_module=numpy1_pickle_module, _use_new_zipfile_serialization=not legacy_format)


def data_pickle(path) -> bytes:
    """The pickle stream inside a torch zip checkpoint (the rest is tensor storage)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return archive.read(name)
