"""Re-identification: KPR model, prompts, part-colour descriptor, ONNX ReID, ReID data set tools."""
