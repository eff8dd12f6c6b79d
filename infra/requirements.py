"""Print the runtime requirements from pyproject.toml (base + the `lambda`
extra), so an image can install dependencies in a layer of their own, before
the code is copied in:  python requirements.py pyproject.toml > requirements.txt"""

import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["lambda"]))
