"""A Writer for tests: SIGKILLs its own process when sequence number $KPRTRACK_KILL_AT begins
(0-based), imitating a run killed mid-way. Does nothing when the variable is unset, so the
killed run and the resumed run have the same configuration."""
import os
import signal


class KillSwitch:
    requires, filtered = frozenset(), False

    def __init__(self, dir: str):
        self.count = 0

    def begin_sequence(self, name, meta):
        kill_at = os.environ.get("KPRTRACK_KILL_AT")
        if kill_at is not None and self.count == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        self.count += 1

    def write(self, frame, detections):
        pass

    def end_sequence(self):
        return []

    def abort(self):
        pass
