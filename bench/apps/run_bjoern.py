"""Starts bjoern (which has no CLI): run_bjoern.py HOST PORT MODULE:CALLABLE."""

import importlib
import os
import sys

import bjoern

host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
module, _, name = target.partition(":")
app = getattr(importlib.import_module(module), name or "application")
bjoern.run(app, host, port)
