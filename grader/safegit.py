"""git on a candidate's repository, without letting that repository run anything.

A candidate's .git is untrusted: its config can name commands (core.fsmonitor, core.pager, diff.external,
filter and textconv drivers, include.path to more of the same) and its hooks are programs. So git never
opens it. Its objects, refs, HEAD, shallow list and index are copied as plain files (no symlinks, no
alternates) into a fresh bare repository in a private temporary folder, and every command runs there;
the commands that read the working tree (status, diff, ls-files) get the candidate's folder as
--work-tree. The copy has none of the candidate's config, hooks or info/, and neither system nor global
config is read, so no filter, textconv or external diff driver exists and a .gitattributes naming one
is inert. A copy is made once per repository state and removed when the process exits.
Left out on purpose: a .git file (linked worktree, submodule) is not followed, submodules are never
looked into, and the candidate's own settings (core.autocrlf, a sha256 object format) are not honoured.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

COPIED_FILES = ("HEAD", "packed-refs", "shallow", "index")
COPIED_FOLDERS = ("objects", "refs")
NOT_COPIED = {"alternates", "http-alternates"}  # objects/info/: would send git to read other folders
GUARDS = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.quotepath=off",
          "-c", "protocol.allow=never")
WORK_TREE_COMMANDS = {  # the subcommands that read the candidate's folder, and the options that keep it inert
    "status": ("--ignore-submodules=all",),
    "diff": ("--ignore-submodules=all", "--no-ext-diff", "--no-textconv"),
    "ls-files": (),
}
HISTORY_OPTIONS = {"log": ("--no-ext-diff", "--no-textconv"), "show": ("--no-ext-diff", "--no-textconv")}

_lock = threading.Lock()
_copies: dict[Path, tuple[tuple, Path]] = {}  # candidate's .git -> (its fingerprint, the sanitized copy)
_root: Path | None = None


def _environment() -> dict[str, str]:
    """This process's environment without any GIT_* variable, plus the ones that keep git to itself."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    return {**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat", "GIT_ATTR_NOSYSTEM": "1"}


def _run(argv: list[str], cwd: Path, timeout: float) -> str | None:
    try:
        return subprocess.run(argv, cwd=cwd, env=_environment(), stdin=subprocess.DEVNULL, capture_output=True,
                              encoding="utf-8", errors="replace", timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _private_root() -> Path:
    """One temporary folder (mode 0700) for this process's copies, removed at exit."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="ragkata-git-"))
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _fingerprint(dot_git: Path) -> tuple:
    """What changes when the candidate commits, moves a branch or stages: size and time of HEAD, index, refs."""
    paths = [dot_git / name for name in COPIED_FILES]
    for folder, _, files in os.walk(dot_git / "refs"):
        paths += [Path(folder) / name for name in files]
    stamps = []
    for path in paths:
        try:
            stat = path.lstat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamps))


def _only_plain(folder: str, names: list[str]) -> set[str]:
    """copytree's ignore: symlinks, anything that is neither file nor folder, and alternates."""
    def plain(name: str) -> bool:
        path = os.path.join(folder, name)
        return not os.path.islink(path) and (os.path.isfile(path) or os.path.isdir(path)) and name not in NOT_COPIED
    return {name for name in names if not plain(name)}


def _copy_into(dot_git: Path, copy: Path) -> None:
    for name in COPIED_FILES:
        source = dot_git / name
        if source.is_file() and not source.is_symlink():
            shutil.copy2(source, copy / name)
    for source in dot_git.glob("sharedindex.*"):  # a split index keeps its entries here
        if source.is_file() and not source.is_symlink():
            shutil.copy2(source, copy / source.name)
    for name in COPIED_FOLDERS:
        source = dot_git / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, copy / name, ignore=_only_plain, dirs_exist_ok=True)


def _sanitized(dot_git: Path) -> Path | None:
    """The sanitized bare copy of dot_git, made now or reused while dot_git has not changed."""
    fingerprint = _fingerprint(dot_git)
    known = _copies.get(dot_git)
    if known and known[0] == fingerprint:
        return known[1]
    if known:
        shutil.rmtree(known[1], ignore_errors=True)
    root = _private_root()
    copy = Path(tempfile.mkdtemp(dir=root))
    if _run(["git", "init", "-q", "--bare", "--template=", str(copy)], root, 20) is None:
        return None
    try:
        _copy_into(dot_git, copy)
    except (OSError, shutil.Error):
        shutil.rmtree(copy, ignore_errors=True)
        return None
    _copies[dot_git] = (fingerprint, copy)
    return copy


def git(repo: Path, *args: str, timeout: float = 20) -> str | None:
    """git's stdout for repo, read from a sanitized copy; None when repo is not its own git repository
    (a .git folder right there: never an enclosing repository, never a .git file) or git fails."""
    dot_git = repo.resolve() / ".git"
    if not dot_git.is_dir():
        return None
    with _lock:
        copy = _sanitized(dot_git)
    if copy is None or not args:
        return None
    command, rest = args[0], args[1:]
    tree = ["--work-tree", str(repo.resolve())] if command in WORK_TREE_COMMANDS else []
    options = WORK_TREE_COMMANDS.get(command) or HISTORY_OPTIONS.get(command, ())
    return _run(["git", "--git-dir", str(copy), *tree, *GUARDS, command, *options, *rest], copy.parent, timeout)
