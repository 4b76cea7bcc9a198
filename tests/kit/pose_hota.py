"""Runs under the PoseTrack21 kit's venv: the kit's keypoint HOTA (run_posetrack_challenge.py's
Evaluator + PoseTrack dataset + HOTAeypoints) on GT_DIR and PRED_DIR, printing every raw result
array as one JSON line: {"sequences": {seq: {field: value}}, "combined": {field: value}}.

The prediction files are copied into a scratch folder named ``sequences`` (the kit only picks up a
folder of that name, and writes its summary file into it)."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["KIT_ROOT"], "eval", "posetrack21"))
import posetrack21.trackeval as trackeval  # noqa: E402


def plain(value):
    try:
        return value.tolist()
    except AttributeError:
        return value


def main(gt_dir, pred_dir):
    scratch = tempfile.mkdtemp()
    sequences = os.path.join(scratch, "sequences")
    shutil.copytree(pred_dir, sequences)
    eval_config = dict(trackeval.Evaluator.get_default_eval_config(), USE_PARALLEL=False, PRINT_RESULTS=False,
                       TIME_PROGRESS=False, LOG_ON_ERROR=None, OUTPUT_PAPER_SUMMARY=True)
    dataset_config = dict(trackeval.datasets.PoseTrack.get_default_dataset_config(), GT_FOLDER=gt_dir,
                          TRACKERS_FOLDER=sequences, PRINT_CONFIG=False)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # the kit prints progress; keep our stdout for the JSON line
    try:
        evaluator = trackeval.Evaluator(eval_config)
        res, _ = evaluator.evaluate([trackeval.datasets.PoseTrack(dataset_config)], [trackeval.metrics.HOTAeypoints()])
    finally:
        sys.stdout = stdout
    per_tracker = res["PoseTrack"]["sequences"]
    out = {"sequences": {}, "combined": None}
    for seq, by_class in per_tracker.items():
        fields = {k: plain(v) for k, v in by_class["person"]["HOTAeypoints"].items()}
        if seq == "COMBINED_SEQ":
            out["combined"] = fields
        else:
            out["sequences"][seq[:-5] if seq.endswith(".json") else seq] = fields
    shutil.rmtree(scratch)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
