"""The per-user list of trusted repositories: a repository's own config may route secrets or
choose what runs on the host only when its resolved path and remote URL are on this list.

The list lives in the user's config folder (platformdirs; `MULLIGAN_CONFIG_DIR` overrides it),
never in a repository, so nothing a checkout contains can add itself to it. An entry names a
path and the remote URL it had when it was trusted: the same folder re-cloned from another
remote is not trusted any more.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.errors import ConfigError

FILE_NAME = "trusted-repositories.json"


@dataclass(frozen=True)
class TrustedRepo:
    path: str
    remote: str | None  # the `origin` URL (else the first remote's), None without remotes


def config_dir() -> Path:
    root = os.environ.get("MULLIGAN_CONFIG_DIR")
    if root:
        return Path(root)
    import platformdirs

    return Path(platformdirs.user_config_dir("mulligan"))


def trust_file() -> Path:
    return config_dir() / FILE_NAME


def identify(repo: Path) -> TrustedRepo:
    """The repository at `repo` as a list entry: its resolved path and its remote URL."""
    path = Path(repo).resolve()
    return TrustedRepo(str(path), _remote_url(path))


def _remote_url(repo: Path) -> str | None:
    def git(*args: str) -> str:
        # -c safe.directory: a repository owned by someone else is exactly the case to name.
        proc = subprocess.run(["git", "-c", f"safe.directory={repo}", *args], cwd=repo,
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    if not repo.is_dir():
        return None
    remotes = git("remote").split()
    if not remotes:
        return None
    name = "origin" if "origin" in remotes else remotes[0]
    return git("remote", "get-url", name) or None


def load() -> list[TrustedRepo]:
    path = trust_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not a readable list of trusted repositories: fix or "
                          "delete it") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path} is not a list of trusted repositories: fix or delete it")
    out = []
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            remote = item.get("remote")
            out.append(TrustedRepo(item["path"], remote if isinstance(remote, str) else None))
    return out


def _save(entries: list[TrustedRepo]) -> None:
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([asdict(e) for e in entries], indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def is_trusted(repo: Path) -> bool:
    return identify(repo) in load()


def add(repo: Path) -> TrustedRepo:
    entry = identify(repo)
    entries = [e for e in load() if e.path != entry.path]
    _save([*entries, entry])
    return entry


def remove(repo: Path) -> bool:
    """Drop every entry for the repository's path; False when there was none."""
    path = str(Path(repo).resolve())
    entries = load()
    kept = [e for e in entries if e.path != path]
    if len(kept) != len(entries):
        _save(kept)
    return len(kept) != len(entries)
