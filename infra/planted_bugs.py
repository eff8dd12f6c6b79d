"""Plant the bugs of two mutation audits one at a time (issue 24's, 1-7, and
issue 38's, 8-14), run the tests that must catch each, restore the file, and
print CAUGHT or SURVIVED for each.

    .venv/bin/python infra/planted_bugs.py [NUMBER ...]
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

F = "function/face_recognition_service/"
plants = [
    (
        "1 verify unit length",
        F + "matching.py",
        """    q = as_unit_vectors(query, "query embedding")
    refs = as_unit_vectors(references, "reference embeddings")
    result: np.ndarray = np.clip(refs @ q, -1.0, 1.0)""",
        """    q = as_unit_vectors(query, "query embedding")
    refs = references
    result: np.ndarray = np.clip(refs @ q, -1.0, 1.0)""",
    ),
    ("2 >= to >", F + "matching.py", "match = best >= threshold", "match = best > threshold"),
    (
        "3 raw size check",
        F + "api/inputs.py",
        """        data = await request.body()
        if len(data) > max_image_bytes:
            raise _too_large(max_image_bytes)""",
        """        data = await request.body()""",
    ),
    ("4 key source empty", F + "api/deps.py", "if not expected or not hmac", "if expected and not hmac"),
    (
        "5 PROCESSING_ERROR transient",
        F + "aws_lambda/queue.py",
        "        ErrorCode.PROCESSING_ERROR,\n",
        "",
    ),
    ("6 EXIF endian", F + "imaging.py", 'order = "<" if tiff[:2] == b"II" else ">"', 'order = ">"'),
    ("7 margin <=", F + "matching.py", "margin < AMBIGUITY_MARGIN", "margin <= AMBIGUITY_MARGIN"),
    (
        "8 hash without the model tag",
        F + "gallery/format.py",
        "for part in (model.encode(), ids_blob):",
        "for part in (ids_blob,):",
    ),
    (
        "9 builder stores rows as given",
        F + "gallery/build.py",
        "enrolled.rows.append(vector / np.linalg.norm(vector))",
        "enrolled.rows.append(vector)",
    ),
    (
        "10 top_k 1 loses the runner-up",
        F + "usecases/identify.py",
        "else max(request.top_k, 2)",
        "else request.top_k",
    ),
    ("11 a zero among several dropped", F + "matching.py", "if (peak == 0).any():", "if (peak == 0).all():"),
    (
        "12 CUDA gets the CPU graph",
        F + "engine/graph.py",
        'cpu = providers[0] == "CPUExecutionProvider"',
        'cpu = "CPUExecutionProvider" in providers',
    ),
    (
        "13 decode budget uncapped on Lambda",
        F + "config.py",
        "budget = min(budget, max(16, int(lambda_memory) // 8))",
        "budget = max(16, int(lambda_memory) // 8)",
    ),
    (
        "14 client retries a 500",
        F + "client.py",
        "RETRY_STATUSES = frozenset({429, 502, 503, 504})",
        "RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})",
    ),
]
# The tests that must catch each: issue 24's boundaries, or the test files of
# the modules issue 38's bugs live in (each fast, none needing a server).
FIRST = [
    "tests/contract/test_boundaries.py",
    "tests/contract/test_hostile_surfaces.py::test_a_source_that_yields_no_key_lets_nobody_in",
    "tests/unit/test_imaging.py",
]
SECOND = [
    "tests/unit/test_identify_ranking.py",
    "tests/unit/test_matching.py",
    "tests/unit/test_engine_graph.py",
    "tests/unit/test_config.py",
    "tests/unit/test_client_retries.py",
]
only = sys.argv[1:]
for name, path, old, new in plants:
    number = name.split()[0]
    if only and number not in only:
        continue
    p = pathlib.Path(path)
    orig = p.read_text()
    if old is None:
        print(name, "SKIP (manual)")
        continue
    assert orig.count(old) == 1, (name, orig.count(old))
    p.write_text(orig.replace(old, new))
    try:
        r = subprocess.run(
            [
                ".venv/bin/python",
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                *(FIRST if int(number) <= 7 else SECOND),
            ],
            capture_output=True,
            text=True,
        )
        last = r.stdout.strip().splitlines()[-1]
        print(name, "CAUGHT" if r.returncode else "SURVIVED", "|", last)
    finally:
        p.write_text(orig)
