"""Person detectors (Detector protocol): oracle ground truth, YOLOX (PyTorch / ONNX Runtime)."""
