"""Published KPR checkpoints. Google Drive files need a manual download (no direct link).

File names are those of the KPR repository's test configs (configs/kpr/{imagenet,solider}/*_test.yaml,
``model.load_weights``); every file is torchreid's checkpoint layout with its training config inside.
``*_IN`` on Market-1501 and every ``*_SOLIDER`` use SOLIDER's Swin code (``imagenet_swin_*`` /
``solider_swin_*``), 384x128; the other ``*_IN`` models are timm Swin V2, 256x128. ``meta`` repeats
those test configs for the README; what a file holds is read from its own stored config, and every
difference from the ``reid`` settings is reported (configs/reid/kpr_sol.yaml has the SOLIDER ones).
"""
from __future__ import annotations

from kprtrack.weights import WeightSpec

_DRIVE = "https://drive.google.com/drive/folders/1t4wXc2c3qlFaqUCifAlc_OPrFwvb7peD"
_HF = "https://huggingface.co/trackinglaboratory/keypoint_promptable_reid/resolve/main/"
_SOLIDER = "solider_swin_base_patch4_window7_224"


def _drive(filename: str, backbone: str, height: int, parts: str, prompt_parts: str) -> WeightSpec:
    return WeightSpec(url=_DRIVE, filename=filename, meta={
        "manual_download": True, "backbone": backbone, "height": height, "width": 128, "parts": parts,
        "prompt_parts": prompt_parts})


KPR_WEIGHTS: dict[str, WeightSpec] = {
    # Occluded-PoseTrack ReID (R-1 92.33 / mAP 82.34), SwinV2-B ImageNet backbone: the tracker's default.
    "kpr_occ_pt_IN": _drive("kpr_occ_pt_IN_82.34_92.33_42323828.pth.tar",
                            "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", 256, "eight", "cck8"),
    # Occluded-PoseTrack ReID, SOLIDER Swin-B (R-1 90.59 / mAP 81.24).
    "kpr_occ_pt_SOLIDER": _drive("kpr_occ_pt_SOLIDER_81.24_90.59_42326409.pth.tar", _SOLIDER, 384, "eight", "cck8"),
    "kpr_market_IN": _drive("kpr_market_IN_89.58_95.87_41898449.pth.tar",
                            "imagenet_swin_base_patch4_window7_224", 384, "five_v", "cck6"),
    "kpr_market_SOLIDER": _drive("kpr_market_SOLIDER_93.25_96.59_41453430.pth.tar", _SOLIDER, 384, "five_v", "cck6"),
    "kpr_occ_duke_IN": _drive("kpr_occ_duke_IN_67.12_79.77_41330771.pth.tar",
                              "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", 256, "eight", "cck8"),
    "kpr_occ_duke_SOLIDER": _drive("kpr_occ_duke_SOLIDER_75.12_84.25_41443413.pth.tar", _SOLIDER, 384, "eight", "cck8"),
    "kpr_occ_reid_IN": _drive("kpr_occ_reid_IN_79.05_85.40_41668493.pth.tar",
                              "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", 256, "five_v", "cck6"),
    "kpr_partial_reid_IN": _drive("kpr_partial_reid_IN_86.0_90.0_41668493.pth.tar",
                                  "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", 256, "five_v", "cck6"),
    "kpr_occ_reid_SOLIDER": _drive("kpr_occ_reid_SOLIDER_82.56_84.80_41898366.pth.tar", _SOLIDER, 384, "five_v", "cck6"),
    "kpr_partial_reid_SOLIDER": _drive("kpr_partial_reid_SOLIDER_90.7_94.0_41898366.pth.tar", _SOLIDER, 384,
                                       "five_v", "cck6"),
    # Multi-dataset model used by TrackLab (~744 MB, direct download; no published checksum).
    "kpr_multi": WeightSpec(url=_HF + "kpr_dancetrack_sportsmot_posetrack21_occludedduke_market_split0.pth.tar"),
}
