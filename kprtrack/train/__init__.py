"""Training of the pipeline's networks: ``train-detector`` (YOLOX) and ``train-pose`` (HRNet) share
the engine in :mod:`kprtrack.train.engine`; each network is a :class:`kprtrack.train.task.TrainTask`."""
