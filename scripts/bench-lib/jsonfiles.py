"""Small helpers the bench's report modules share: read a JSON fragment, CPU per message."""
import json
import os


def load_json(path):
    """The JSON value in `path`, or None when it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def per_msg(cpu_s, n):
    """Milliseconds of CPU per message, or None without a figure or messages."""
    return None if cpu_s is None or not n else round(1000 * cpu_s / n, 3)


def read_order(d):
    """The non-empty lines of `d/order` (the measurements in run order); [] without the file."""
    try:
        with open(os.path.join(d, "order")) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError:
        return []
