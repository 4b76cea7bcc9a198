"""Published KPR checkpoints. Google Drive files need a manual download (no direct link)."""
from __future__ import annotations

from kprtrack.weights import WeightSpec

_DRIVE = "https://drive.google.com/drive/folders/1t4wXc2c3qlFaqUCifAlc_OPrFwvb7peD"
_HF = "https://huggingface.co/trackinglaboratory/keypoint_promptable_reid/resolve/main/"

KPR_WEIGHTS: dict[str, WeightSpec] = {
    # Occluded-PoseTrack ReID, SwinV2-B ImageNet backbone (R-1 92.33 / mAP 82.34, 256x128, cck8 prompts, 8 parts).
    "kpr_occ_pt_IN": WeightSpec(url=_DRIVE, filename="kpr_occ_pt_IN_82.34_92.33_42323828.pth.tar",
                                meta={"manual_download": True, "backbone": "swinv2_base_window12to16_192to256"}),
    # Occluded-PoseTrack ReID, SOLIDER Swin-B backbone: listed for completeness, backbone not implemented.
    "kpr_occ_pt_SOLIDER": WeightSpec(url=_DRIVE, filename="kpr_occ_pt_SOLIDER_81.24_90.59_42326409.pth.tar",
                                     meta={"manual_download": True, "backbone": "solider_swin_base_patch4_window7_224"}),
    # Multi-dataset model used by TrackLab (~744 MB, direct download; no published checksum).
    "kpr_multi": WeightSpec(url=_HF + "kpr_dancetrack_sportsmot_posetrack21_occludedduke_market_split0.pth.tar"),
}
