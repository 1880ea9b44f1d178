"""Reads one PCD-04 on stdin, checks it (pcd04_checks.py), prints the summary as JSON and
any problem on stderr; exits 1 when there is one."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcd04_checks import check  # noqa: E402

summary, problems = check(sys.stdin.read())
print(json.dumps(summary))
for p in problems:
    print(f"PCD-04 problem: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
