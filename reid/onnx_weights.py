"""Published ONNX person-ReID files for ``reid=onnx reid.model=<name>`` (downloaded once into the cache).

torchreid's OSNet weights (KaiyangZhou/deep-person-reid model zoo) are PyTorch files on Google Drive,
which cannot be fetched without a browser. ``osnet_x0_25_msmt17`` is the ONNX export of torchreid's
``osnet_x0_25_msmt17`` published in Smorodov/Multitarget-tracker (Apache-2.0), pinned to the commit
that added it; its sha256 and size are those of that git blob.
"""
from __future__ import annotations

from kprtrack.weights import WeightSpec

_MULTITARGET = "https://github.com/Smorodov/Multitarget-tracker/raw/7dea766232e006849b884ea0ac1f0d1ae5f5adea"

ONNX_REID_WEIGHTS: dict[str, WeightSpec] = {
    # OSNet x0.25, MSMT17 (torchreid, MIT). Input "images" 1x3x256x128 RGB, /255 then ImageNet
    # mean/std; output 1x512 (configs/reid/osnet.yaml has these settings).
    "osnet_x0_25_msmt17": WeightSpec(
        url=f"{_MULTITARGET}/data/reid/osnet_x0_25_msmt17.onnx",
        sha256="bb2267b23a64675f67bffc3177b7319e3a08de56041d153562c0206699634bce",
        size=891612),
}
