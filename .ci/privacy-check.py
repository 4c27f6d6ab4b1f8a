#!/usr/bin/env python3
"""Fails unless every test PRIVACY.md names ran and passed in a `cargo test` log.

Usage: privacy-check.py TEST_LOG PRIVACY.md
Names are `binary::path::test`, where binary is the test target (`tellijn_wire`, `gate_e2e`, …)
as cargo prints it in `Running … (target/…/deps/BINARY-HASH)`.
"""
import re
import sys

log_path, doc_path = sys.argv[1], sys.argv[2]
passed = set()
binary = None
for line in open(log_path, encoding="utf-8", errors="replace"):
    m = re.search(r"Running .*\(.*/deps/([A-Za-z0-9_]+)-[0-9a-f]+\)", line)
    if m:
        binary = m.group(1)
        continue
    m = re.match(r"test (\S+) \.\.\. ok", line.strip())
    if m and binary:
        passed.add(f"{binary}::{m.group(1)}")

doc = open(doc_path, encoding="utf-8").read()
named = []
for block in re.findall(r"test: (.*?)(?:\n\d+\.|\n\n|\n##|\Z)", doc, re.S):
    named += re.findall(r"`([a-z0-9_]+::[a-z0-9_:]+)`", block)
if not named:
    sys.exit(f"{doc_path} names no tests")
missing = [n for n in named if n not in passed]
if missing:
    for n in missing:
        print(f"{doc_path}: {n} does not exist or did not pass", file=sys.stderr)
    sys.exit(1)
print(f"{doc_path}: all {len(set(named))} named tests passed")
