"""``train-pose``: fine-tuning top-down HRNet on PoseTrack21 keypoints (PoseTrack joint order).

``data`` (training people), ``augment`` (mmpose 1.x top-down recipe), ``targets`` (MSRA / UDP
Gaussian heatmaps), ``loss`` (KeypointMSELoss) and ``task`` (the TrainTask the engine drives).
"""
