"""Plant the seven bugs of issue 24's mutation audit one at a time, run the tests that
must catch each, restore the file, and print CAUGHT or SURVIVED for each.

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
        "ErrorCode.MODEL_NOT_LOADED, ErrorCode.PROCESSING_ERROR, ErrorCode.SERVICE_BUSY",
        "ErrorCode.MODEL_NOT_LOADED, ErrorCode.SERVICE_BUSY",
    ),
    ("6 EXIF endian", F + "imaging.py", 'order = "<" if tiff[:2] == b"II" else ">"', 'order = ">"'),
    ("7 margin <=", F + "matching.py", "margin < AMBIGUITY_MARGIN", "margin <= AMBIGUITY_MARGIN"),
]
only = sys.argv[1:]
for name, path, old, new in plants:
    if only and name[0] not in only:
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
                "tests/contract/test_boundaries.py",
                "tests/contract/test_hostile_surfaces.py::test_a_source_that_yields_no_key_lets_nobody_in",
                "tests/unit/test_imaging.py",
            ],
            capture_output=True,
            text=True,
        )
        last = r.stdout.strip().splitlines()[-1]
        print(name, "CAUGHT" if r.returncode else "SURVIVED", "|", last)
    finally:
        p.write_text(orig)
