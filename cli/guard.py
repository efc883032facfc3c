"""`synapse guard install|check`: a git pre-commit hook refusing commits outside the committer's live claims.

The hub decides (`guard.check`, with its own claim-scope rules); this module only finds the repository, the
staged paths and the hook file. The hook is a small sh script: it bakes in the Python that installed it and
the hub and room given at install (defaults that the commit's own SYNAPSE_HUB / SYNAPSE_ROOM override); the
committer (SYNAPSE_NAME) and its token (SYNAPSE_TOKEN or the saved one) are read at commit time.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.exit_codes import ExitCode
from cli.main import client, client_options, not_utf8, settings
from cli.output import clean, emit, emit_error
from hub.protocol.errors import Code, HubError

__all__ = ["ALLOW_UNREACHABLE_ENV", "HOOK_MARK", "hook_text", "register"]

HOOK_MARK = "# synapse-guard: written by `synapse guard install`"  # our own hook: replaced without --force
F = TypeVar("F", bound=Callable[..., Any])
ALLOW_UNREACHABLE_ENV = "SYNAPSE_GUARD_ALLOW_UNREACHABLE"
CHUNK_PATHS = 1_000  # paths per request (the hub takes up to 10,000; a smaller batch answers sooner)
CHUNK_CHARS = 256_000  # characters of paths per request, well under the hub's frame limit
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


class GitError(click.ClickException):
    """git failed or this is not a repository: exit 2 (a usage problem), the reason on stderr."""

    exit_code = int(ExitCode.USAGE)


def _git(repo: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH)") from None
    if done.returncode != 0:
        why = os.fsdecode(done.stderr).strip().splitlines()
        raise GitError(f"git {args[0]} failed in {repo}: {why[-1] if why else f'exit {done.returncode}'}")
    return done.stdout


def _top(repo: Path) -> Path:
    """The top of the repository's working tree that `repo` is in."""
    return Path(os.fsdecode(_git(repo, "rev-parse", "--show-toplevel").strip()))


def hooks_dir(repo: Path) -> Path:
    """Where git runs this repository's hooks: core.hooksPath when set (relative: to the working tree's top),
    else the repository's own hooks directory."""
    top = _top(repo)
    try:
        configured = os.fsdecode(_git(top, "config", "--type=path", "--get", "core.hooksPath").strip())
    except GitError:
        configured = ""  # not set
    if configured:
        return top / configured  # an absolute one stays absolute
    return Path(os.fsdecode(_git(top, "rev-parse", "--path-format=absolute", "--git-path", "hooks").strip()))


def hook_text(python: str, hub: str, room: str) -> str:
    """The pre-commit hook: `synapse guard check --staged` with this Python, hub and room as defaults."""
    return f"""#!/bin/sh
{HOOK_MARK}; run it again to update this file,
# delete this file to remove the guard. It refuses a commit whose staged paths lie outside the live claims
# of the committer (SYNAPSE_NAME, with SYNAPSE_TOKEN or the token saved when it joined). If the hub cannot
# be reached the commit is refused too, unless {ALLOW_UNREACHABLE_ENV}=1.
# `git commit --no-verify` skips every pre-commit hook.
# Baked in at install; a SYNAPSE_HUB / SYNAPSE_ROOM set when committing wins:
[ -n "$SYNAPSE_HUB" ] || SYNAPSE_HUB={shlex.quote(hub)}
[ -n "$SYNAPSE_ROOM" ] || SYNAPSE_ROOM={shlex.quote(room)}
export SYNAPSE_HUB SYNAPSE_ROOM
exec {shlex.quote(python)} -m hub guard check --staged
"""


def _install(repo: Path, force: bool, hub: str, room: str) -> dict[str, Any]:
    hooks = hooks_dir(repo)
    hook = hooks / "pre-commit"
    text = hook_text(sys.executable, hub, room)
    result: dict[str, Any] = {"hook": str(hook), "hub": hub, "room": room, "python": sys.executable}
    old: bytes | None = None
    if hook.exists() or hook.is_symlink():
        old = hook.read_bytes() if hook.is_file() else b""
        if HOOK_MARK.encode() not in old and not force:
            raise click.ClickException(
                f"{hook} already exists and was not written by synapse: refusing to overwrite it. Move it "
                "away (or merge the two by hand), or give --force to replace it (it is kept as "
                "pre-commit.before-synapse)."
            )
    hooks.mkdir(parents=True, exist_ok=True)
    if old is not None and HOOK_MARK.encode() not in old:
        os.replace(hook, hooks / "pre-commit.before-synapse")
        result["kept"] = str(hooks / "pre-commit.before-synapse")
    result["status"] = (
        "unchanged" if old == text.encode() else ("updated" if old is not None else "installed")
    )
    tmp = hooks / f".pre-commit.synapse-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, hook)
    return result


def _changed(top: Path, *against: str) -> list[str]:
    out = _git(top, "diff", "--cached", "--name-only", "--no-renames", "-z", *against, "--")
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def staged_paths(top: Path) -> list[str]:
    """Every path the commit being made touches: added, modified, deleted, type-changed, and both sides of
    a rename (git's rename detection off, a rename is a deletion and an addition).

    Concluding a merge, a path counts only if the staged version differs from every parent's: one equal to
    a merged branch's came with that branch (its own commits were checked); the rest is the committer's.
    """
    paths = _changed(top)
    merging = Path(
        os.fsdecode(_git(top, "rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD").strip())
    )
    if paths and merging.is_file():
        for parent in merging.read_text(encoding="ascii", errors="replace").split():
            theirs = set(_changed(top, parent))
            paths = [p for p in paths if p in theirs]
    return paths


def _unsendable(path: str) -> str | None:
    """Why the hub cannot be asked about `path` (no claim can cover it either), or None."""
    why = not_utf8(path)
    if why is not None:
        return f"its name is {why}"
    if any(ch in _CONTROL for ch in path):
        return "its name holds a control character"
    return None


def _chunks(paths: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for p in paths:
        if chunks[-1] and (len(chunks[-1]) >= CHUNK_PATHS or size + len(p) > CHUNK_CHARS):
            chunks.append([])
            size = 0
        chunks[-1].append(p)
        size += len(p)
    return chunks if chunks[0] else []


def _ask(agent: Any, paths: list[str]) -> list[dict[str, Any]]:
    """guard.check for `paths`, halving a batch the hub found too costly to decide at once."""
    try:
        return agent.replies.check_paths(paths)["paths"]  # type: ignore[no-any-return]
    except HubError as exc:
        if exc.code != Code.LIMIT_EXCEEDED or len(paths) == 1:
            raise
    half = len(paths) // 2
    return _ask(agent, paths[:half]) + _ask(agent, paths[half:])


def _allow_unreachable(flag: bool) -> bool:
    return flag or os.environ.get(ALLOW_UNREACHABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _repo_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--repo",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help=help,
    )


def register(group: click.Group) -> None:
    @group.group("guard")
    def guard() -> None:
        """A git pre-commit hook that refuses a commit touching files outside the committer's live claims.

        The committer is --name / SYNAPSE_NAME when committing; `guard check` asks the hub, which matches the
        paths with its own claim rules. Exit codes: 0 allowed, 1 refused (each path and its holder on
        stderr), 2 usage (no name, not a git repository), 4 hub unreachable, 5 not authorized.
        """

    @guard.command("install")
    @_repo_option("A directory of the git repository to guard (any one inside its working tree).")
    @click.option(
        "--force",
        is_flag=True,
        help="Replace a pre-commit hook synapse did not write (it is kept as pre-commit.before-synapse).",
    )
    @client_options
    @click.pass_context
    def install(ctx: click.Context, repo: Path, force: bool) -> None:
        """Write the repository's pre-commit hook (in core.hooksPath when that is set).

        The hook runs `synapse guard check --staged` with this Python; the hub URL and room in effect now
        (--hub/--room or SYNAPSE_HUB/SYNAPSE_ROOM, else the defaults) are written into it, and a SYNAPSE_HUB
        or SYNAPSE_ROOM set when committing overrides them. The committer's name and token are never written
        into it: they come from SYNAPSE_NAME and SYNAPSE_TOKEN (or the saved token) at commit time. Running
        it again updates the hook; a hook it did not write is refused unless --force.
        """
        s = settings(ctx)
        result = _install(repo, force, s.hub, s.room)
        text = f"{result['status']} the git guard: {result['hook']} (hub {s.hub}, room {s.room})"
        if "kept" in result:
            text += f"\nthe previous hook is kept as {result['kept']}"
        emit(s.json, result, text)

    @guard.command("check")
    @click.argument("paths", nargs=-1, metavar="[PATH]...", type=click.Path())  # any bytes: checked below
    @click.option(
        "--staged",
        is_flag=True,
        help="Check the paths staged for the next commit (the default when no PATH is given).",
    )
    @_repo_option("A directory of the git repository (for --staged).")
    @click.option(
        "--allow-unreachable",
        is_flag=True,
        help=f"Allow (exit 0, with a warning) when the hub cannot be reached, instead of refusing with exit 4 "
        f"[env {ALLOW_UNREACHABLE_ENV}=1; off by default].",
    )
    @client_options
    @click.pass_context
    def check(
        ctx: click.Context, paths: tuple[str, ...], staged: bool, repo: Path, allow_unreachable: bool
    ) -> None:
        """Check that --name's live claims cover every PATH (relative to the repository's top, as `git diff
        --name-only` prints them; default: the staged paths).

        Exit 0 if they all do; exit 1 listing on stderr each path that is not covered, with the agent that
        holds it or "unclaimed". If the hub cannot be reached: exit 4 (the commit is refused), unless
        --allow-unreachable or SYNAPSE_GUARD_ALLOW_UNREACHABLE=1.
        """
        s = settings(ctx)
        if paths and staged:
            raise click.UsageError("give PATHs or --staged, not both")
        if not s.name:
            raise click.UsageError(
                "the guard checks a commit as its committer: set SYNAPSE_NAME (or give --name NAME)"
            )
        listed = list(paths) if paths else staged_paths(_top(repo))
        if not listed:
            emit(s.json, {"allowed": True, "name": s.name, "paths": []}, "nothing staged")
            return
        local = {p: why for p in listed if (why := _unsendable(p)) is not None}
        asked = [p for p in listed if p not in local]
        try:
            agent = client(ctx, need_name=True)
            answers = [a for chunk in _chunks(asked) for a in _ask(agent, chunk)]
        except HubError as exc:
            if exc.code not in (Code.UNREACHABLE, Code.DISCONNECTED):
                raise
            if _allow_unreachable(allow_unreachable):
                click.echo(
                    f"synapse guard: warning: the hub at {s.hub} cannot be reached; allowed without a check "
                    f"({ALLOW_UNREACHABLE_ENV} / --allow-unreachable)",
                    err=True,
                )
                emit(s.json, {"allowed": True, "checked": False, "name": s.name, "paths": listed})
                return
            emit_error(
                s.json,
                str(exc.code),
                f"the hub at {s.hub} cannot be reached, so the guard cannot tell whose files these are: "
                f"refused. Start the hub, or let commits through while it is down with "
                f"{ALLOW_UNREACHABLE_ENV}=1 (or skip the hook once: git commit --no-verify). ({exc.message})",
            )
            ctx.exit(int(ExitCode.UNREACHABLE))
        by_path = {a["path"]: a for a in answers}
        results = [
            {"path": p, "held": False, "holder": None, "work": None, "reason": local[p]}
            if p in local
            else by_path[p]
            for p in listed
        ]
        refused = [r for r in results if not r["held"]]
        emit(
            s.json,
            {"allowed": not refused, "name": s.name, "paths": results},
            None if refused else f"allowed: {len(results)} path(s), all in {clean(s.name)}'s live claims",
        )
        if refused:
            click.echo(
                f"synapse guard: refused: {len(refused)} of {len(results)} path(s) are outside "
                f"{clean(s.name)}'s live claims:",
                err=True,
            )
            for r in refused:
                if r.get("reason"):
                    who = f"cannot be checked: {r['reason']}"
                elif r["holder"] is None:
                    who = "unclaimed"
                else:
                    who = f"held by {clean(r['holder'])} (claim {clean(r['work'])})"
                click.echo(f"  {clean(r['path'])}: {who}", err=True)
            click.echo(
                "claim them first (synapse claim WORK --paths ...), or ask their holder to hand them off",
                err=True,
            )
            ctx.exit(int(ExitCode.REFUSED))
