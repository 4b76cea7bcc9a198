"""Data sources: PoseTrack21 layout, videos, image folders, the synthetic demo."""
