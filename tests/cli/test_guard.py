"""`synapse guard`: a real git repository whose pre-commit hook asks a real hub whether the committer's live
claims cover every staged path (CLI.md "Additions": Git guard)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli, ThreadHub, seconds


def _git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=seconds(60_000)
    )


class Repo:
    """A git repository in the test's folder; git runs with the test's home, no system or user config."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        path.mkdir()
        for args in (
            ("init", "-q", "-b", "main"),
            ("config", "user.name", "Test Committer"),
            ("config", "user.email", "committer@example.invalid"),
            ("config", "commit.gpgsign", "false"),
        ):
            self.git(*args, check=True)

    def git(self, *args: str, check: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
        done = _git(self.path, {**self.env, **env}, *args)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def write(self, rel: str, text: str = "x\n") -> None:
        f = self.path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)

    def commit(
        self, message: str, *, name: str | None = "alice", **env: str
    ) -> subprocess.CompletedProcess[str]:
        self.git("add", "-A", check=True)
        who = {"SYNAPSE_NAME": name} if name is not None else {}
        return self.git("commit", "-q", "-m", message, **who, **env)

    def commits(self) -> int:
        done = self.git("rev-list", "--count", "HEAD")
        return int(done.stdout) if done.returncode == 0 else 0


@pytest.fixture
def git_env(tmp_path: Path, client_env: dict[str, str], hub: ThreadHub) -> dict[str, str]:
    """What `git commit` (and so the hook) runs with: the test's home and token file, the hub's URL only in
    the hook (baked at install), never the real home or any git config outside the repository."""
    home = tmp_path / "git-home"
    home.mkdir()
    env = {k: v for k, v in client_env.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / "gitconfig"))
    return env


@pytest.fixture
def repo(tmp_path: Path, git_env: dict[str, str]) -> Repo:
    return Repo(tmp_path / "repo", git_env)


@pytest.fixture
def guarded(repo: Repo, cli: Cli) -> Repo:
    """The repository with the guard installed against the test hub; alice holds src/a, bob holds src/b."""
    r = cli("claim", "a-work", "--paths", "src/a", "--name", "alice")
    assert r.exit_code == 0, r.output
    r = cli("claim", "b-work", "--paths", "src/b/**/*.py", "--name", "bob")
    assert r.exit_code == 0, r.output
    r = cli("guard", "install", "--repo", str(repo.path))
    assert r.exit_code == 0, r.output
    return repo


def test_commit_of_own_paths_passes(guarded: Repo) -> None:
    """Alice commits files inside her claim: the hook allows it."""
    guarded.write("src/a/x.py")
    guarded.write("src/a/deep/y.py")
    done = guarded.commit("mine")
    assert done.returncode == 0, done.stderr
    assert guarded.commits() == 1


def test_commit_touching_anothers_claim_is_refused_naming_the_holder(guarded: Repo) -> None:
    """A staged path inside bob's claim refuses alice's whole commit and names bob and his work."""
    guarded.write("src/a/x.py")
    guarded.write("src/b/y.py")
    done = guarded.commit("not only mine")
    assert done.returncode != 0
    assert "src/b/y.py: held by bob (claim b-work)" in done.stderr
    assert "src/a/x.py" not in done.stderr
    assert guarded.commits() == 0
    assert guarded.commit("as bob", name="bob").returncode != 0  # bob does not hold src/a either


def test_commit_of_an_unclaimed_path_is_refused(guarded: Repo) -> None:
    """A path no live claim covers is refused as unclaimed (bob's glob covers src/b/*.py only)."""
    guarded.write("README.md")
    guarded.write("src/b/notes.txt")
    done = guarded.commit("unclaimed")
    assert done.returncode != 0
    assert "README.md: unclaimed" in done.stderr and "src/b/notes.txt: unclaimed" in done.stderr
    assert guarded.commits() == 0


def test_renames_and_deletions_count_on_both_sides(guarded: Repo) -> None:
    """Moving a file out of one's claim touches the destination; deleting or moving another's file touches
    it: each side needs a live claim."""
    guarded.write("src/a/x.py")
    guarded.write("src/b/y.py")
    guarded.git("add", "-A", check=True)
    guarded.git("commit", "-q", "--no-verify", "-m", "seed", check=True)  # the history, without the hook
    guarded.git("mv", "src/a/x.py", "moved.py", check=True)
    done = guarded.git("commit", "-q", "-m", "move out", SYNAPSE_NAME="alice")
    assert done.returncode != 0 and "moved.py: unclaimed" in done.stderr
    guarded.git("reset", "-q", "--hard", check=True)
    guarded.git("mv", "src/b/y.py", "src/a/y.py", check=True)
    done = guarded.git("commit", "-q", "-m", "take bob's", SYNAPSE_NAME="alice")
    assert done.returncode != 0 and "src/b/y.py: held by bob (claim b-work)" in done.stderr
    guarded.git("reset", "-q", "--hard", check=True)
    guarded.git("rm", "-q", "src/b/y.py", check=True)
    done = guarded.git("commit", "-q", "-m", "delete bob's", SYNAPSE_NAME="alice")
    assert done.returncode != 0 and "src/b/y.py: held by bob" in done.stderr
    assert guarded.commits() == 1


def test_check_by_hand(guarded: Repo, cli: Cli) -> None:
    """`guard check PATHS` answers without git: exit 1 with each refused path and holder; --json has all."""
    r = cli("guard", "check", "src/a/x.py", "--name", "alice")
    assert r.exit_code == 0 and "allowed" in r.output
    r = cli("guard", "check", "src/a/x.py", "src/b/c/y.py", "x.md", "--name", "alice", "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["allowed"] is False and out["name"] == "alice"
    assert [(p["path"], p["held"], p["holder"]) for p in out["paths"]] == [
        ("src/a/x.py", True, "alice"),
        ("src/b/c/y.py", False, "bob"),
        ("x.md", False, None),
    ]
    assert "src/b/c/y.py: held by bob (claim b-work)" in r.stderr and "x.md: unclaimed" in r.stderr
    r = cli("guard", "check", "../escape", "--name", "alice")
    assert r.exit_code == 1 and r.stderr.startswith("bad_request:")
    r = cli("guard", "check", "src/a/x.py", "--staged", "--name", "alice")
    assert r.exit_code == 2
    r = cli("guard", "check", "src/a/x.py")
    assert r.exit_code == 2 and "SYNAPSE_NAME" in r.stderr


def test_check_staged_by_hand_in_a_subdirectory(
    guarded: Repo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no PATH the staged paths are checked, relative to the repository's top wherever it runs."""
    guarded.write("src/a/x.py")
    guarded.write("src/b/y.py")
    guarded.git("add", "-A", check=True)
    monkeypatch.chdir(guarded.path / "src")
    r = cli("guard", "check", "--name", "alice")
    assert r.exit_code == 1 and "src/b/y.py: held by bob" in r.stderr and "src/a/x.py" not in r.stderr
    r = cli("guard", "check", "--name", "bob", "--json")
    assert r.exit_code == 1
    assert [p["path"] for p in json.loads(r.stdout)["paths"] if not p["held"]] == ["src/a/x.py"]


def test_a_wrong_token_is_not_authorized(guarded: Repo, cli: Cli) -> None:
    """The check runs as the committer: a token that is not alice's exits 5, in the hook too."""
    r = cli("guard", "check", "src/a/x.py", "--name", "alice", "--token", "not-alices")
    assert r.exit_code == 5
    guarded.write("src/a/x.py")
    done = guarded.commit("mine", SYNAPSE_TOKEN="not-alices")
    assert done.returncode != 0 and "unauthorized: wrong token for 'alice'" in done.stderr
    assert guarded.commits() == 0


def test_a_commit_without_a_name_is_refused(guarded: Repo) -> None:
    """The hook needs to know who commits: without SYNAPSE_NAME it refuses and says so."""
    guarded.write("src/a/x.py")
    done = guarded.commit("anonymous", name=None)
    assert done.returncode != 0 and "SYNAPSE_NAME" in done.stderr
    assert guarded.commits() == 0


def _dead_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def test_hub_down_refuses_the_commit_unless_allowed(repo: Repo, cli: Cli) -> None:
    """If the hub cannot be reached the hook refuses with a clear message (exit 4 by hand); the variable
    SYNAPSE_GUARD_ALLOW_UNREACHABLE=1 lets the commit through with a warning."""
    dead = _dead_url()
    r = cli("guard", "install", "--repo", str(repo.path), "--hub", dead)
    assert r.exit_code == 0, r.output
    repo.write("src/a/x.py")
    done = repo.commit("hub down")
    assert done.returncode != 0
    assert f"the hub at {dead} cannot be reached" in done.stderr and "refused" in done.stderr
    assert "SYNAPSE_GUARD_ALLOW_UNREACHABLE=1" in done.stderr
    assert repo.commits() == 0
    r = cli("guard", "check", "src/a/x.py", "--name", "alice", "--hub", dead)
    assert r.exit_code == 4 and "cannot be reached" in r.stderr
    done = repo.commit("hub down, allowed", SYNAPSE_GUARD_ALLOW_UNREACHABLE="1")
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr and repo.commits() == 1
    r = cli("guard", "check", "src/a/x.py", "--name", "alice", "--hub", dead, "--allow-unreachable")
    assert r.exit_code == 0 and "warning" in r.stderr


def _hook(repo: Repo) -> Path:
    return repo.path / ".git" / "hooks" / "pre-commit"


def test_install_is_idempotent_and_executable(repo: Repo, cli: Cli, hub: ThreadHub) -> None:
    """Installing twice leaves one identical, executable hook; the hub URL and room are baked in."""
    r = cli("guard", "install", "--repo", str(repo.path), "--room", "guarded", "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["status"] == "installed" and first["hook"] == str(_hook(repo))
    text = _hook(repo).read_text()
    assert os.stat(_hook(repo)).st_mode & stat.S_IXUSR
    assert hub.url in text and "guarded" in text and "guard check --staged" in text
    r = cli("guard", "install", "--repo", str(repo.path), "--room", "guarded", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "unchanged"
    assert _hook(repo).read_text() == text
    r = cli("guard", "install", "--repo", str(repo.path), "--json")  # our own hook: updated, no --force
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "updated"
    assert sorted(p.name for p in _hook(repo).parent.iterdir() if not p.name.endswith(".sample")) == [
        "pre-commit"
    ]


def test_install_refuses_a_foreign_hook_unless_forced(repo: Repo, cli: Cli) -> None:
    """A pre-commit hook synapse did not write is left alone (and said so); --force replaces it, keeping it."""
    foreign = "#!/bin/sh\necho 'my own checks'\n"
    _hook(repo).parent.mkdir(parents=True, exist_ok=True)
    _hook(repo).write_text(foreign)
    r = cli("guard", "install", "--repo", str(repo.path))
    assert r.exit_code == 1
    assert "not written by synapse" in r.stderr and "--force" in r.stderr
    assert _hook(repo).read_text() == foreign
    r = cli("guard", "install", "--repo", str(repo.path), "--force")
    assert r.exit_code == 0, r.output
    assert "guard check --staged" in _hook(repo).read_text()
    assert (_hook(repo).parent / "pre-commit.before-synapse").read_text() == foreign


def test_install_respects_core_hooks_path(repo: Repo, cli: Cli) -> None:
    """With core.hooksPath set the hook goes there, and git runs it."""
    assert cli("claim", "w", "--paths", "src", "--name", "alice").exit_code == 0
    repo.git("config", "core.hooksPath", ".githooks", check=True)
    r = cli("guard", "install", "--repo", str(repo.path / "."), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hook"] == str(repo.path / ".githooks" / "pre-commit")
    assert not _hook(repo).exists()
    repo.write("unclaimed.txt")
    done = repo.commit("through hooksPath")
    assert done.returncode != 0 and "unclaimed.txt: unclaimed" in done.stderr


def test_install_outside_a_repository_is_a_usage_error(tmp_path: Path, cli: Cli) -> None:
    """Not a git repository: exit 2 with git's reason."""
    plain = tmp_path / "plain"
    plain.mkdir()
    r = cli("guard", "install", "--repo", str(plain))
    assert r.exit_code == 2 and "not a git repository" in r.stderr.lower()


def test_a_partial_commit_checks_only_what_it_commits(guarded: Repo) -> None:
    """`git commit PATH` commits PATH only (git's temporary index): bob's staged file stays out of it."""
    guarded.write("src/a/x.py")
    guarded.write("src/b/y.py")
    guarded.git("add", "-A", check=True)
    done = guarded.git("commit", "-q", "-m", "only mine", "src/a/x.py", SYNAPSE_NAME="alice")
    assert done.returncode == 0, done.stderr
    done = guarded.git("commit", "-q", "-a", "-m", "the rest", SYNAPSE_NAME="alice")
    assert done.returncode != 0 and "src/b/y.py: held by bob" in done.stderr


def test_concluding_a_merge_checks_only_the_committers_own_changes(guarded: Repo, cli: Cli) -> None:
    """A path merged in unchanged from a parent came with that branch; a conflict's resolution (it differs
    from every parent) is the committer's and needs a claim."""
    guarded.write("src/b/y.py", "one\n")
    guarded.write("shared.txt", "base\n")
    guarded.git("add", "-A", check=True)
    guarded.git("commit", "-q", "--no-verify", "-m", "seed", check=True)
    guarded.git("checkout", "-q", "-b", "bobs", check=True)
    guarded.write("src/b/y.py", "two\n")
    guarded.write("shared.txt", "bob's\n")
    guarded.git("commit", "-q", "--no-verify", "-am", "bob", check=True)
    guarded.git("checkout", "-q", "main", check=True)
    guarded.write("shared.txt", "alice's\n")
    guarded.git("commit", "-q", "--no-verify", "-am", "alice", check=True)
    assert guarded.git("merge", "-q", "bobs").returncode != 0  # conflict in shared.txt
    guarded.write("shared.txt", "both\n")
    guarded.git("add", "shared.txt", check=True)
    done = guarded.git("commit", "-q", "--no-edit", SYNAPSE_NAME="alice")
    assert done.returncode != 0
    assert "shared.txt: unclaimed" in done.stderr and "src/b/y.py" not in done.stderr
    assert cli("claim", "merge", "--paths", "shared.txt", "--name", "alice").exit_code == 0
    done = guarded.git("commit", "-q", "--no-edit", SYNAPSE_NAME="alice")
    assert done.returncode == 0, done.stderr
    assert guarded.commits() == 4


def test_a_batch_too_costly_for_one_request_is_split(cli: Cli, hub: ThreadHub) -> None:
    """When the hub finds a batch too costly to decide at once (`limit_exceeded`), the CLI halves it until
    each part fits, and still answers every path."""
    from agent_sdk import Code, HubError, SyncAgent

    globs = [f"lib/**/{'*a' * 16}{k}" for k in range(10)]
    assert cli("claim", "globs", "--paths", *globs, "--name", "bob").exit_code == 0
    assert cli("join", "alice").exit_code == 0
    paths = [f"lib/{k}/" + "/".join(["a" * 200 + "b"] * 4) for k in range(20)]
    with SyncAgent("alice", hub=hub.url) as alice, pytest.raises(HubError) as info:
        alice.check_paths(paths)
    assert info.value.code == Code.LIMIT_EXCEEDED
    r = cli("guard", "check", *paths, "--name", "alice", "--json")
    assert r.exit_code == 1, r.output
    got = json.loads(r.stdout)["paths"]
    assert [(p["path"], p["held"], p["holder"]) for p in got] == [(p, False, None) for p in paths]
