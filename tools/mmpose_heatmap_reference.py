"""Reference heatmap targets and crop warps of mmpose 1.x for tests/fixtures/reference/mmpose_heatmaps.npz.

Calls mmpose's own ``generate_gaussian_heatmaps`` (what ``MSRAHeatmap(unbiased=False).encode``
calls) and ``generate_udp_gaussian_heatmaps`` (``UDPHeatmap(heatmap_type='gaussian').encode``)
with the keypoints scaled the way those codecs scale them (input / heatmap size, and (input - 1) /
(heatmap - 1) for UDP, both as float32), on seeded keypoints that include joints off the
heatmap, on its border and invisible ones; and the top-down crop's ``get_warp_matrix`` /
``get_udp_warp_matrix`` (mmpose/structures/bbox/transforms.py) on seeded centres, scales and
rotations. ``tests/test_train_pose_data.py`` compares ``kprtrack.train.pose.targets`` and
``kprtrack.train.pose.augment.affine_matrix`` with them. Both files need only numpy and OpenCV:
they are loaded by path, no mmpose install. Nothing here is imported by kprtrack.

    git clone https://github.com/open-mmlab/mmpose /tmp/mmpose_src      # main, 759b39c
    python tools/mmpose_heatmap_reference.py --mmpose-repo /tmp/mmpose_src
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reference" / "mmpose_heatmaps.npz"
# (input (h, w), heatmap (h, w), sigma)
CASES = [((256, 192), (64, 48), 2.0), ((128, 96), (32, 24), 2.0), ((384, 288), (96, 72), 3.0)]


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"mmpose_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mmpose-repo", type=Path, required=True)
    args = parser.parse_args()
    module = load(args.mmpose_repo / "mmpose" / "codecs" / "utils" / "gaussian_heatmap.py")
    bbox = load(args.mmpose_repo / "mmpose" / "structures" / "bbox" / "transforms.py")
    arrays: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for case, (input_hw, heatmap_hw, sigma) in enumerate(CASES):
        h, w = input_hw
        keypoints = rng.uniform([-12.0, -12.0], [w + 12.0, h + 12.0], size=(1, 17, 2)).astype(np.float32)
        keypoints[0, 0] = (0.0, 0.0)  # on the border
        keypoints[0, 1] = (w - 1.0, h - 1.0)
        keypoints[0, 2] = (-40.0, -40.0)  # far off: no part of its Gaussian on the heatmap
        keypoints[0, 3] = (w + 40.0, h / 2)
        keypoints[0, 4] = (-3.0 * w / 64 * sigma, h / 2)  # just past the 3-sigma reach
        visible = (rng.random((1, 17)) < 0.8).astype(np.float32)
        visible[0, :5] = 1.0
        msra_scale = (np.array(input_hw[::-1]) / np.array(heatmap_hw[::-1])).astype(np.float32)
        udp_scale = ((np.array(input_hw[::-1]) - 1) / (np.array(heatmap_hw[::-1]) - 1)).astype(np.float32)
        msra, msra_w = module.generate_gaussian_heatmaps(heatmap_hw[::-1], keypoints / msra_scale, visible, sigma)
        udp, udp_w = module.generate_udp_gaussian_heatmaps(heatmap_hw[::-1], keypoints / udp_scale, visible, sigma)
        arrays.update({f"case{case}_input": np.array(input_hw), f"case{case}_heatmap": np.array(heatmap_hw),
                       f"case{case}_sigma": np.array(sigma), f"case{case}_keypoints": keypoints[0],
                       f"case{case}_visible": visible[0], f"case{case}_msra": msra, f"case{case}_msra_weights": msra_w[0],
                       f"case{case}_udp": udp, f"case{case}_udp_weights": udp_w[0]})
        print(case, input_hw, heatmap_hw, sigma, "visible", int(visible.sum()), "msra kept", int(msra_w.sum()),
              "udp kept", int(udp_w.sum()))
    warps = []  # rows: cx, cy, scale w, scale h, rotation, out h, out w
    for _ in range(12):
        out_hw = [(256, 192), (384, 288), (128, 96)][int(rng.integers(3))]
        warps.append([*rng.uniform(50, 900, 2), *rng.uniform(40, 600, 2), rng.uniform(-90, 90), *out_hw])
    warps = np.array(warps)
    arrays["warp_params"] = warps
    arrays["warp"] = np.stack([bbox.get_warp_matrix(w[:2], w[2:4], w[4], (int(w[6]), int(w[5]))) for w in warps])
    arrays["warp_udp"] = np.stack([bbox.get_udp_warp_matrix(w[:2], w[2:4], w[4], (int(w[6]), int(w[5])))
                                   for w in warps])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, num_cases=np.array(len(CASES)), **arrays)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
