"""Immutable workspace snapshots held as git trees in a private object store.

A snapshot records the repository's tracked and untracked-but-not-ignored files as they
are on disk, without writing to the user's repository: objects go into a temporary bare
repository that borrows the user's objects through git's alternates mechanism, and a
temporary index stands in for the user's. Applying a candidate's diff is `git apply
--cached` against another temporary index, so a diff that does not apply fails with
git's own message, and what the sandbox tests is exactly what the user would apply.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox import git
from sandbox.errors import SnapshotError

MAX_TEXT_BYTES = 1 << 20


class PatchDoesNotApply(Exception):
    """A candidate's diff does not apply; the message is git's."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    sha: str
    path: str


class Snapshot:
    def __init__(self, store: Path, tree: str, origin: Path | None, *, owner: bool = True) -> None:
        self._store = store
        self._owner = owner
        self.tree = tree
        self.origin = origin
        self._lock = threading.Lock()
        self._entries_cache: dict[str, list[TreeEntry]] = {}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> Snapshot:
        root = Path(path).resolve()
        if not root.is_dir():
            raise SnapshotError(f"{root} is not a directory")
        store = Path(tempfile.mkdtemp(prefix="mulligan-snap-"))
        try:
            git_dir = _init_store(store)
            env = _env(git_dir, store / "index", work_tree=root)
            paths = _git_paths_of(root)
            if paths is not None:
                user_git, common = paths
                _borrow_objects(git_dir, common / "objects")
                exclude = common / "info" / "exclude"
                if exclude.is_file():
                    shutil.copyfile(exclude, git_dir / "info" / "exclude")
                # Starting from a copy of the user's index keeps git's stat cache, so only
                # changed files are hashed; the user's own index is only read.
                _copy_index(user_git / "index", store / "index", git_dir)
                _git(["add", "-A", "--", "."], env, cwd=root)
            else:
                listing = _listing_inside_repo(root)
                if listing is None:
                    _git(["add", "-A", "--", "."], env, cwd=root)
                elif listing:
                    # A subfolder of a repository: the repository's ignore rules still apply.
                    _git(["add", "--pathspec-from-file=-", "--pathspec-file-nul"], env, cwd=root,
                         stdin="\0".join(listing))
            tree = _git(["write-tree"], env).strip()
        except BaseException:
            shutil.rmtree(store, ignore_errors=True)
            raise
        return cls(store, tree, root)

    @classmethod
    def from_index(cls, path: str | os.PathLike, index: Path | None = None,
                   objects: Path | None = None) -> Snapshot:
        """The staged content of a repository (what `git commit` would record), without
        unstaged edits or untracked files. `index` and `objects` override the repository's
        own (a hook gets a temporary index from `git commit -a`); both are only read."""
        root = Path(path).resolve()
        paths = _git_paths_of(root)
        if paths is None:
            raise SnapshotError(f"{root} is not the top of a git repository")
        user_git, common = paths
        store = Path(tempfile.mkdtemp(prefix="mulligan-snap-"))
        try:
            git_dir = _init_store(store)
            _borrow_objects(git_dir, objects or common / "objects")
            _copy_index(index or user_git / "index", store / "index", git_dir)
            tree = _git(["write-tree"], _env(git_dir, store / "index")).strip()
        except BaseException:
            shutil.rmtree(store, ignore_errors=True)
            raise
        return cls(store, tree, root)

    @classmethod
    def from_files(cls, files: dict[str, str | bytes]) -> Snapshot:
        """A snapshot from in-memory contents (tests, benchmark tasks)."""
        with tempfile.TemporaryDirectory(prefix="mulligan-files-") as tmp:
            for rel, content in files.items():
                target = Path(tmp, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                data = content.encode() if isinstance(content, str) else content
                target.write_bytes(data)
            snap = cls.from_directory(tmp)
        snap.origin = None
        return snap

    # -- reading --------------------------------------------------------------------------

    def entries(self, tree: str | None = None) -> list[TreeEntry]:
        tree = tree or self.tree
        if tree not in self._entries_cache:
            out = _git(["ls-tree", "-r", "-z", tree], self._env())
            entries = []
            for record in out.split("\0"):
                if not record:
                    continue
                meta, path = record.split("\t", 1)
                mode, kind, sha = meta.split()
                if kind == "blob":
                    entries.append(TreeEntry(mode, sha, path))
            self._entries_cache[tree] = entries
        return self._entries_cache[tree]

    def paths(self) -> list[str]:
        return [e.path for e in self.entries()]

    def read_blobs(self, entries: list[TreeEntry]) -> dict[str, bytes]:
        if not entries:
            return {}
        out = git.run(["cat-file", "--batch"], env=self._env(), check=True,
                      input="".join(e.sha + "\n" for e in entries)).stdout
        data, pos = {}, 0
        for entry in entries:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            start = header_end + 1
            data[entry.path] = out[start:start + size]
            pos = start + size + 1
        return data

    def text_files(self, tree: str | None = None) -> dict[str, str]:
        """Every UTF-8 text file up to 1 MiB, for the model and the edit applier."""
        entries = [e for e in self.entries(tree) if e.mode != "120000"]
        return text_only(self.read_blobs(entries))

    # -- patching and export ------------------------------------------------------------

    def apply(self, patch: str) -> str:
        """The tree that results from applying `patch`; raises PatchDoesNotApply."""
        if not patch.strip():
            return self.tree
        index = self._store / f"index-{uuid.uuid4().hex}"
        env = self._env(index)
        try:
            _git(["read-tree", self.tree], env)
            proc = git.run(["apply", "--cached", "--whitespace=nowarn", "-"],
                           input=patch.encode(), env=env, cwd=self._store)
            if not proc.ok:
                message = proc.stderr.decode("utf-8", "replace").strip() or "git apply failed"
                raise PatchDoesNotApply(message)
            return _git(["write-tree"], env).strip()
        finally:
            index.unlink(missing_ok=True)

    def tar(self, tree: str | None = None) -> bytes:
        """The tree as an uncompressed tar (modes and symlinks kept)."""
        entries = self.entries(tree)
        blobs = self.read_blobs(entries)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                info = tarfile.TarInfo(entry.path)
                info.uid = info.gid = 1000
                if entry.mode == "120000":
                    info.type = tarfile.SYMTYPE
                    info.linkname = blobs[entry.path].decode("utf-8", "replace")
                    tar.addfile(info)
                    continue
                info.mode = 0o755 if entry.mode == "100755" else 0o644
                info.size = len(blobs[entry.path])
                tar.addfile(info, io.BytesIO(blobs[entry.path]))
        return buf.getvalue()

    def materialize(self, dest: str | os.PathLike, tree: str | None = None) -> Path:
        """Write the tree's files into `dest` (a fresh directory)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.tar(tree)), mode="r") as tar:
            tar.extractall(dest, filter="data")
        return dest

    def with_tree(self, tree: str) -> Snapshot:
        """The same store at another tree (e.g. after adding reproduction tests); closing the
        original closes both."""
        return Snapshot(self._store, tree, self.origin, owner=False)

    def close(self) -> None:
        if self._owner:
            shutil.rmtree(self._store, ignore_errors=True)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self, index: Path | None = None) -> dict[str, str]:
        return _env(self._store / "objects.git", index or self._store / "index")


def text_only(blobs: Mapping[str, bytes]) -> dict[str, str]:
    """The files that are UTF-8 text up to 1 MiB, decoded: what the model is shown."""
    result = {}
    for path, blob in blobs.items():
        if len(blob) > MAX_TEXT_BYTES or b"\0" in blob:
            continue
        try:
            result[path] = blob.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return result


def _init_store(store: Path) -> Path:
    git_dir = store / "objects.git"
    git.run(["init", "-q", "--bare", str(git_dir)], check=True, env=git.clean_env())
    (git_dir / "info").mkdir(exist_ok=True)
    return git_dir


def _env(git_dir: Path, index: Path, work_tree: Path | None = None) -> dict[str, str]:
    env = git.clean_env(GIT_DIR=str(git_dir), GIT_INDEX_FILE=str(index))
    if work_tree is not None:
        env["GIT_WORK_TREE"] = str(work_tree)
    return env


def _git_paths_of(root: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) when `root` is the top of a work tree; they differ in a linked
    worktree, whose objects live in the common dir."""
    proc = git.run(["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
                   cwd=root, env=git.clean_env())
    if not proc.ok:
        return None
    top, git_dir, common = proc.text.splitlines()[:3]
    if Path(top).resolve() != root:
        return None  # a subfolder of a repository: snapshot the folder as a plain tree
    return Path(git_dir), (root / common).resolve()


def _listing_inside_repo(root: Path) -> list[str] | None:
    """The files under `root` that its enclosing repository does not ignore, or None when
    `root` is in no repository."""
    proc = git.run(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                   env=git.clean_env())
    if not proc.ok:
        return None
    names = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [n for n in dict.fromkeys(names) if n and os.path.lexists(root / n)]


def _borrow_objects(store_git_dir: Path, objects: Path) -> None:
    (store_git_dir / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")


def _copy_index(index: Path, dest: Path, store_git_dir: Path) -> None:
    if not index.is_file():
        return
    # copy2 keeps the index's mtime: git re-hashes a file whose mtime is not older than the
    # index ("racily clean"); a fresh mtime would make it trust the stat data of a file
    # rewritten, same size, in the second it was staged, and snapshot the staged bytes.
    shutil.copy2(index, dest)
    for shared in index.parent.glob("sharedindex.*"):  # core.splitIndex keeps a second file
        link = store_git_dir / shared.name
        if not link.exists():
            link.symlink_to(shared)


def _git(args: list[str], env: dict[str, str], cwd: Path | None = None,
         stdin: str | None = None) -> str:
    """stdout of a git command on the store; its failure is a SnapshotError."""
    proc = git.run(args, env=env, cwd=cwd, input=stdin or None)
    if not proc.ok:
        raise SnapshotError(f"git {args[0]} failed: {proc.last_line(str(proc.returncode))}")
    return proc.text
