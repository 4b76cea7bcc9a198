"""Runs under the PoseTrack21 kit's venv: the kit's box HOTA (scripts/run_mot.py's EvaluatorMOT +
PoseTrackMOT dataset + HOTA, unchanged) on every case of CASES_DIR, printing the raw result arrays as
one JSON line: {case: {"sequences": {seq: {field: value}}, "combined": {field: value}}}.

A case is ``CASES_DIR/<case>/gt/<seq>/{image_info.json, gt/gt.txt}`` (the posetrack_mot layout) and
``CASES_DIR/<case>/pred/<seq>.txt``; the predictions are copied to ``<scratch>/tracker/`` first (the
kit writes its summary file into the tracker folder)."""
import json
import os
import shutil
import sys
import tempfile

from pose_hota import plain, trackeval  # the keypoint driver's helper and its import of the kit


def evaluate(gt_dir, pred_dir):
    # run_mot.py's layout: TRACKERS_FOLDER/<tracker>/<seq>.txt (with the files directly in TRACKERS_FOLDER
    # the kit evaluates, then fails writing its summary into a subfolder named like that folder)
    parent = tempfile.mkdtemp()
    shutil.copytree(pred_dir, os.path.join(parent, "tracker"))
    # exactly run_mot.py's configuration, quiet, without its error log inside the kit folder
    default_eval = trackeval.Evaluator.get_default_eval_config()
    default_dataset = trackeval.datasets.PoseTrackMOT.get_default_dataset_config()
    config = dict(default_eval, **default_dataset, METRICS=["HOTA"])
    config.update(GT_FOLDER=gt_dir, TRACKERS_FOLDER=parent, USE_PARALLEL=False, PRINT_CONFIG=False,
                  TIME_PROGRESS=False, LOG_ON_ERROR=None)
    evaluator = trackeval.EvaluatorMOT({k: v for k, v in config.items() if k in default_eval})
    dataset = trackeval.datasets.PoseTrackMOT({k: v for k, v in config.items() if k in default_dataset})
    output, messages = evaluator.evaluate([dataset], [trackeval.metrics.HOTA()])
    res = output["PoseTrackMOT"]["tracker"]
    out = {"sequences": {}, "combined": None}
    for seq, by_class in res.items():
        fields = {k: plain(v) for k, v in by_class["pedestrian"]["HOTA"].items()}
        if seq == "COMBINED_SEQ":
            out["combined"] = fields
        else:
            out["sequences"][seq] = fields
    return out


def main(cases_dir):
    results = {}
    for case in sorted(os.listdir(cases_dir)):
        root = os.path.join(cases_dir, case)
        results[case] = evaluate(os.path.join(root, "gt"), os.path.join(root, "pred"))
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
