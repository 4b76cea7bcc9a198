"""KPR: Keypoint Promptable Re-Identification (model, Swin backbone, prompt tokenizer, checkpoints)."""
from kprtrack.reid.kpr.stage import KPRReID

__all__ = ["KPRReID"]
