"""``train-detector``: fine-tuning YOLOX on PoseTrack21 person boxes (data, augmentation, task)."""
