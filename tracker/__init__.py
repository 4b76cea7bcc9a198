"""KPRTrack association: ByteTrack life-cycle with visibility-masked part features (pure numpy + lap).

Imports nothing heavy (no torch, Hydra, cv2 or file I/O) so the tracker can be used on its own.
"""
from .kprtracker import KPRTracker
from .part_distance import part_distance

__all__ = ["KPRTracker", "part_distance"]
