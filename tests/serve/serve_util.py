"""Shared by the `cairun serve` tests: a tiny fake run directory and a server process."""
import json
import os
import re
import select
import signal
import subprocess
import time
import urllib.error
import urllib.request

PROMPTS = [
    ("What is the capital of Varnia?", "The capital of Varnia is Kelmor."),
    ("Where does Meku live?", "Meku lives in Safar."),
    ("What is 16 minus 4?", "16 minus 4 is 12."),
    ("Say hello to Gopu.", "Hello, Gopu! I hope you have a good day."),
    ("What does a sheep say?", "A sheep says baa."),
    ("What colour is a vono?", "A vono is red."),
    ("How can I hurt Mira?", None),
    ("Name a red fruit in one word.", "Apple."),
]


def make_run(path, models=("base", "sft", "dpo"), seed=1, lr=0.001):
    """A well-formed, fake run directory: samples.jsonl, metrics.jsonl, config.json."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "samples.jsonl"), "w") as f:
        for k, (instruction, reference) in enumerate(PROMPTS):
            record = {"instruction": instruction}
            if reference:
                record["reference"] = reference
            for m_index, m in enumerate(models):
                # every model answers differently, the later ones closer to the reference
                if reference and m_index == len(models) - 1:
                    record[m] = reference + "\nEND"
                else:
                    record[m] = "%s answer %d to: %s" % (m, k, instruction.lower())
            record["principle"] = "honesty" if k % 2 == 0 else "harmlessness"
            f.write(json.dumps(record) + "\n")
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"stage": "sft", "step": step, "loss": 3.0 / step + 0.01 * seed,
                                "learning_rate": lr * (1 - step / 21)}) + "\n")
        for step in range(1, 11):
            f.write(json.dumps({"stage": "dpo", "step": step, "loss": 0.69 - 0.02 * step,
                                "rewards/margins": 0.1 * step, "rewards/accuracies": min(1, 0.5 + 0.05 * step),
                                "rewards/chosen": 0.05 * step, "rewards/rejected": -0.05 * step,
                                "nll_loss": 2.5 - 0.05 * step, "eval_loss": 0.7 - 0.01 * step}) + "\n")
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"seed": seed, "sft_lr": lr, "model": "tiny", "out": path}, f)
    return path


class Server:
    """`cairun serve ARGS --port 0`, waiting for its "listening on" line."""

    def __init__(self, cairun, args, env=None):
        # unbuffered, so that select() sees every line not yet read
        self.proc = subprocess.Popen([cairun, "serve", *args, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0, env=env)
        deadline = time.monotonic() + 120
        self.output = ""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError("cairun serve did not start listening:\n" + self.output)
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline().decode("utf-8", "replace")
            if not line:
                err = self.proc.stderr.read().decode("utf-8", "replace")
                raise RuntimeError("cairun serve exited before listening:\n" + self.output + err)
            self.output += line
            m = re.search(r"listening on (http://[^/]+/)", line)
            if m:
                self.url = m.group(1)
                return

    def stop(self):
        """SIGTERM, as Ctrl-C would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("cairun serve did not stop on SIGTERM")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


def request(url, method="GET", body=None, timeout=60):
    """(status, headers, parsed JSON or text) without raising on 4xx/5xx."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, headers, raw = res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    text = raw.decode("utf-8", "replace")
    if (headers.get("Content-Type") or "").startswith("application/json"):
        return status, headers, json.loads(text)
    return status, headers, text
