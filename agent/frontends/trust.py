"""`mulligan trust [PATH]`: add, list or remove repositories whose own config Mulligan
honours in full (see agent/trust.py and docs/security.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent import trust
from agent.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("trust", help="trust a repository's own config (endpoint, image, ...)",
                       description="A repository's .mulligan.toml / [tool.mulligan] may set "
                                   "base_url, image, ca_bundle, allow_test_edits, prices and "
                                   "large budgets only when you trust it. The list is yours "
                                   "(your user config folder), keyed by the repository's "
                                   "path and remote URL.")
    p.add_argument("path", nargs="?", default=".", help="the repository (default: here)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="show the trusted repositories")
    action.add_argument("--remove", action="store_true", help="stop trusting PATH")
    p.set_defaults(handler=cmd_trust)


def cmd_trust(args: argparse.Namespace) -> int:
    if args.list:
        entries = trust.load()
        for entry in entries:
            print(f"{entry.path}\t{entry.remote or '(no remote)'}")
        if not entries:
            print(f"no trusted repositories ({trust.trust_file()})", file=sys.stderr)
        return 0
    path = Path(args.path)
    if args.remove:
        if trust.remove(path):
            print(f"mulligan: no longer trusting {path.resolve()}", file=sys.stderr)
            return 0
        print(f"mulligan: {path.resolve()} was not trusted", file=sys.stderr)
        return 1
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory")
    entry = trust.add(path)
    print(f"mulligan: trusting {entry.path} (remote: {entry.remote or 'none'}): its config may "
          "now choose the model endpoint, the image and the CA bundle", file=sys.stderr)
    return 0
