"""Pose estimators (PoseEstimator protocol): oracle ground truth, HRNet, MoveNet, mmpose."""
