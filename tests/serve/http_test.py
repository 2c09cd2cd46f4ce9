"""Plain HTTP tests of `cairun serve`: the page's files, 4xx answers with messages,
judgments written concurrently by several threads in several processes to two
servers on the same run, resuming after a restart, command-line errors, and
answers generated at start-up from a prompts file (--prompts, --model).

    python3 tests/serve/http_test.py build/cairun WORK_DIR
"""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Server, make_run, request  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def expect_error(base, path, status, needle, method="GET", body=None):
    got, _, r = request(base + path, method, body)
    check(got == status, "%s %s: status %s, expected %s (%r)" % (method, path, got, status, r))
    message = r.get("error", "") if isinstance(r, dict) else str(r)
    check(needle in message, "%s %s: error %r should contain %r" % (method, path, message, needle))


def http_status(req):
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code


def judge_all(base_urls, annotator):
    """One annotator judging every pair, alternating between servers; returns the pairs posted."""
    posted = []
    k = 0
    status, _, nxt = request(base_urls[0] + "api/judge/next?annotator=" + annotator)
    assert status == 200, nxt
    while not nxt["done"]:
        url = base_urls[k % len(base_urls)]
        choice = ["A", "B", "tie", "both_bad"][(len(posted) + len(annotator)) % 4]
        status, _, r = request(url + "api/judge", "POST",
                               json.dumps({"annotator": annotator, "pair": nxt["pair"], "choice": choice,
                                           "note": "note by %s with \"quotes\" and\nnewline" % annotator}))
        assert status == 200, r
        posted.append(nxt["pair"])
        nxt = r["next"]
        k += 1
    return posted


def process_worker(args):
    base_urls, prefix, threads = args
    results, errors = {}, []

    def run(i):
        name = "%s-%d" % (prefix, i)
        try:
            results[name] = judge_all(base_urls, name)
        except Exception as e:  # reported to the parent
            errors.append("%s: %s" % (name, e))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, errors


def make_random_model(cairun, path, seed):
    """A tiny random Llama with the test GPT-2 tokenizer (tests/lua/spec.lua's random_model)."""
    script = path + ".lua"
    with open(script, "w") as f:
        f.write('package.path = "tests/lua/?.lua;" .. package.path\n'
                'require("spec").random_model(%s, { seed = %d })\n' % (json.dumps(path), seed))
    subprocess.run([cairun, script], check=True, timeout=300)
    return path


def check_prompts(cairun, work):
    """`cairun serve --prompts FILE --model NAME=PATH ...`: answers made at start-up, reused after a restart."""
    root = os.path.join(work, "prompts")
    os.makedirs(root)
    m1 = make_random_model(cairun, os.path.join(root, "m1"), 1)
    m2 = make_random_model(cairun, os.path.join(root, "m2"), 2)
    prompts = os.path.join(root, "prompts.jsonl")
    with open(prompts, "w") as f:
        f.write(json.dumps({"prompt": "What is the capital of Varnia?", "reference": "Kelmor", "principle": "honesty"}) + "\n")
        f.write(json.dumps({"prompt": "Say hello to Gopu."}) + "\n")
    args = ["--prompts", prompts, "--model", "one=" + m1, "--model", "two=" + m2, "--max-new-tokens", "5"]
    s = Server(cairun, args)
    check("one: answers generated into " + os.path.join(root, "answers-one.jsonl") in s.output,
          "the first start generates: %r" % s.output)
    status, _, items = request(s.url + "api/items")
    check(status == 200 and items["total"] == 2 and items["models"] == ["one", "two"], "items: %r" % (items,))
    with open(os.path.join(root, "answers-one.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    check(lines[0]["model"] == m1 and lines[0]["options"]["max_new_tokens"] == 5, "what made the answers: %r" % lines[0])
    for k, item in enumerate(items["items"]):
        answers = {a["model"]: a for a in item["answers"]}
        check(sorted(answers) == ["one", "two"], "every model answers prompt %d" % k)
        check(answers["one"]["text"] == lines[k + 1]["text"], "the page shows the answers file's text")
        check(len(answers["one"]["checks"]) >= 8, "each criterion's verdict under the answer")
    check(items["items"][0]["principle"] == "honesty", "the record's principle is kept")
    status, _, nxt = request(s.url + "api/judge/next?annotator=ann")
    check(status == 200 and not nxt["done"] and nxt["progress"]["total"] >= 1, "blind pairs of the generated answers")
    check(s.stop() == 0, "the prompts server stops")
    with open(os.path.join(root, "answers-one.jsonl"), "rb") as f:
        before = f.read()
    s = Server(cairun, args)
    check("one: answers reused from" in s.output and "two: answers reused from" in s.output,
          "a restart with the same inputs reuses the answers: %r" % s.output)
    check(s.stop() == 0, "the restarted prompts server stops")
    with open(os.path.join(root, "answers-one.jsonl"), "rb") as f:
        check(f.read() == before, "the reused answers file is unchanged")

    def cli(*args):
        p = subprocess.run([cairun, "serve", *args, "--port", "0"], capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    rc, out = cli("--prompts", prompts, "--model", m1)
    check(rc != 0 and "expected NAME=PATH" in out, "--model without a name: %r" % out)
    rc, out = cli("--prompts", prompts, "--model", "a=" + m1, "--model", "a=" + m2)
    check(rc != 0 and "--model a is named twice" in out, "a name used twice: %r" % out)
    rc, out = cli("--prompts", prompts, "--model", "a=" + os.path.join(root, "nowhere"))
    check(rc != 0 and "is not a model directory" in out, "a model that does not load: %r" % out)
    bad = os.path.join(root, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"prompt": "a"}\n{"reference": "b"}\n')
    rc, out = cli("--prompts", bad, "--model", "a=" + m1)
    check(rc != 0 and bad + ":2:" in out and "fields found: reference" in out, "a record without a prompt: %r" % out)


def main():
    cairun, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run = make_run(os.path.join(work, "alpha"))
    other = make_run(os.path.join(work, "beta"), models=("sft", "dpo"), seed=2, lr=0.002)

    # --- the page and bad requests ---
    s1 = Server(cairun, [run])
    base = s1.url
    check(base.startswith("http://127.0.0.1:"), "loopback by default: " + base)
    status, headers, page = request(base)
    check(status == 200 and "cairun serve" in page, "GET / serves the page")
    check("default-src 'self'" in (headers.get("Content-Security-Policy") or ""), "the page forbids other origins")
    for name in ("app.js", "style.css"):
        status, _, _ = request(base + name)
        check(status == 200, "GET /" + name)
    expect_error(base, "no/such/file.js", 404, "no page or file")
    expect_error(base, "api/nothing", 404, "no API /api/nothing")
    expect_error(base, "api/items?criterion=coherant", 400, "did you mean coherent")
    expect_error(base, "api/items?limit=abc", 400, "'limit' must be a non-negative integer")
    expect_error(base, "api/items?model=gpt", 400, "unknown model 'gpt'")
    expect_error(base, "api/judge/next", 400, "an annotator id is required")
    expect_error(base, "api/judge/next?annotator=%3Cscript%3E", 400, "annotator id must be")
    expect_error(base, "api/judge", 400, "the body must be a JSON object", "POST", "{not json")
    expect_error(base, "api/judge", 404, "no pair 100000", "POST",
                 json.dumps({"annotator": "x", "pair": 100000, "choice": "A"}))
    expect_error(base, "api/judge", 400, "field 'choice'", "POST", json.dumps({"annotator": "x", "pair": 1, "choice": "C"}))
    expect_error(base, "api/judge", 405, "takes POST, not GET")
    expect_error(base, "api/judge", 413, "too large", "POST", "x" * ((1 << 20) + 100))
    # other web sites: a POST that is not JSON (no CORS preflight), a Host header not the loopback (DNS rebinding)
    req = urllib.request.Request(base + "api/judge", data=json.dumps({"annotator": "x", "pair": 1, "choice": "A"}).encode(),
                                 method="POST", headers={"Content-Type": "text/plain"})
    check(http_status(req) == 415, "a POST that is not JSON is refused (415)")
    req = urllib.request.Request(base + "api/overview", headers={"Host": "evil.example:" + base.rsplit(":", 1)[1].strip("/")})
    check(http_status(req) == 403, "a Host header that is not the loopback is refused (403)")
    req = urllib.request.Request(base.replace("127.0.0.1", "localhost") + "api/overview")
    check(http_status(req) == 200, "localhost is the loopback too")
    check(not os.path.exists(os.path.join(run, "judgments.jsonl")), "no bad request wrote a judgment")
    status, _, ov = request(base + "api/overview")
    check(status == 200 and ov["models"] == ["base", "sft", "dpo"] and ov["items"] == 8, "overview: %r" % (ov,))
    total_pairs = ov["pairs"]
    check(total_pairs == 24, "8 prompts x 3 model pairs: %s" % total_pairs)

    # --- concurrent annotators: 3 processes x 4 threads, two servers on one judgments.jsonl ---
    s2 = Server(cairun, [run])
    urls = [s1.url, s2.url]
    with multiprocessing.Pool(3) as pool:
        outcomes = pool.map(process_worker, [(urls, "p%d" % p, 4) for p in range(3)])
    posted, errors = {}, []
    for r, e in outcomes:
        posted.update(r)
        errors.extend(e)
    check(not errors, "every request of the concurrent annotators succeeded: %s" % errors[:3])
    path = os.path.join(run, "judgments.jsonl")
    with open(path, "rb") as f:
        raw = f.read()
    check(raw.endswith(b"\n"), "judgments.jsonl ends with a whole line")
    lines = raw.decode().split("\n")[:-1]
    check(len(lines) == 12 * total_pairs, "one line per judgment: %d lines, expected %d" % (len(lines), 12 * total_pairs))
    per_annotator = {}
    bad = 0
    for line in lines:
        try:
            j = json.loads(line)
        except ValueError:
            bad += 1
            continue
        per_annotator.setdefault(j["annotator"], []).append(j["pair"])
        check(j["winner"] in j["models"] or j["winner"] in ("tie", "both_bad"), "winner is a model, tie or both_bad")
        check(sorted(j["shown"]) == sorted(j["models"]), "shown order holds the hidden identities")
        check(j["note"].endswith("and\nnewline"), "the note is kept whole")
    check(bad == 0, "%d lines of judgments.jsonl do not parse" % bad)
    for name, pairs in posted.items():
        check(sorted(per_annotator.get(name, [])) == sorted(pairs), "the log has exactly %s's judgments" % name)
        check(sorted(pairs) == list(range(1, total_pairs + 1)), "%s judged every pair once" % name)
    r1 = request(s1.url + "api/judge/results")[2]
    r2 = request(s2.url + "api/judge/results")[2]
    check(r1 == r2, "both servers report the same results")
    check(r1["judgments"] == 12 * total_pairs, "results count every judgment")
    check(len(r1["agreement"]) == 66, "kappa for every pair of the 12 annotators")
    check("bradley_terry" in r1, "Bradley-Terry strengths with three models")

    # --- resume after a restart ---
    for i in range(3):
        nxt = request(s1.url + "api/judge/next?annotator=resumer")[2]
        status, _, _ = request(s1.url + "api/judge", "POST",
                               json.dumps({"annotator": "resumer", "pair": nxt["pair"], "choice": "A"}))
        check(status == 200, "judgment %d saved" % i)
    pending = request(s1.url + "api/judge/next?annotator=resumer")[2]
    check(s1.stop() == 0, "SIGTERM stops the server cleanly")
    check(s2.stop() == 0, "SIGTERM stops the second server cleanly")
    s3 = Server(cairun, [run, other, "--judgments", os.path.join(work, "elsewhere.jsonl")])
    status, _, ov = request(s3.url + "api/overview")
    check(ov["models"] == ["alpha/base", "alpha/sft", "alpha/dpo", "beta/sft", "beta/dpo"], "models of two runs: %r" % ov["models"])
    check(ov["judgments"].endswith("elsewhere.jsonl"), "--judgments chooses the file")
    settings = request(s3.url + "api/settings")[2]
    differing = [s["key"] for s in settings["settings"] if s["differs"]]
    check(sorted(differing) == ["out", "seed", "sft_lr"], "settings diffed: %r" % differing)
    check(s3.stop() == 0, "third server stops")
    s4 = Server(cairun, [run])
    again = request(s4.url + "api/judge/next?annotator=resumer")[2]
    check(again["progress"]["judged"] == 3 and again["pair"] == pending["pair"],
          "a restarted server resumes the annotator: %r vs %r" % (again.get("progress"), pending.get("progress")))
    check(s4.stop() == 0, "fourth server stops")

    # --- command-line errors ---
    def cli(*args):
        p = subprocess.run([cairun, "serve", *args], capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    rc, out = cli()
    check(rc != 0 and "name at least one run directory" in out, "no run directory: %r" % out)
    rc, out = cli(os.path.join(work, "missing"))
    check(rc != 0 and "does not exist" in out, "missing run directory: %r" % out)
    rc, out = cli(run, "--port", "http")
    check(rc != 0 and "--port must be a port number" in out, "bad port: %r" % out)
    s5 = Server(cairun, [run])
    port = s5.url.rsplit(":", 1)[1].strip("/")
    rc, out = cli(run, "--port", port)
    check(rc != 0 and "cannot listen on 127.0.0.1:" + port in out, "port in use: %r" % out)
    s5.stop()

    # A stop right after "listening on" (the server's listening thread may not
    # have run yet): every start stops within serve_util's 30 s.
    for _ in range(10):
        check(Server(cairun, [run]).stop() == 0, "a server stopped as soon as it listens exits")

    check_prompts(cairun, work)

    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)
    print("serve http: ok")


if __name__ == "__main__":
    main()
