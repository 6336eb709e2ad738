"""``adaptlab clean``: remove fine-tuning checkpoints that no stored result needs.

Only entries directly under ``.adaptlab/checkpoints/`` and ``.adaptlab/exports/`` (the
model folders ``predict -c`` and ``serve -c`` export once and reuse) are ever removed,
and links are removed as links: nothing outside those folders is followed, sized or
deleted, whatever a project folder from someone else holds.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from adaptlab.cli.common import console, project_option
from adaptlab.core.format import plural

if TYPE_CHECKING:
    from adaptlab.engine.project import Project


@dataclass
class CleanPlan:
    remove: list[tuple[Path, int]] = field(default_factory=list)  # (entry, bytes)
    kept: list[Path] = field(default_factory=list)
    resumable: list[Path] = field(default_factory=list)  # unfinished fine-tunes, kept

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.remove)


def checkpoints_folder(project: Project, name: str = "checkpoints") -> Path | None:
    """``.adaptlab/<name>`` if it is a real folder inside the project; None if absent."""
    from adaptlab.core.errors import AdaptlabError

    state = project.root / ".adaptlab"
    folder = state / name
    if not os.path.lexists(state) or not os.path.lexists(folder):
        return None
    for path in (state, folder):
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            what = f"a link to {path.resolve()}" if stat.S_ISLNK(mode) else "not a folder"
            raise AdaptlabError(
                f"{path} is {what}; clean removes nothing outside the project's own "
                f".adaptlab/{name} folder",
                file=path,
                fix=f"look at what it points to, then remove it yourself (rm {path}) if it is "
                "not needed",
                code="unsafe-path",
            )
    return folder


def _size(path: Path) -> int:
    """Bytes under ``path`` without following any link (a link counts as itself)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in (*dirs, *files):
            try:
                entry = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if not stat.S_ISDIR(entry.st_mode):
                total += entry.st_size
    return total


def referenced_keys(project: Project, *, all_runs: bool) -> set[str]:
    """Result keys of the latest finished run (or of every run)."""
    from adaptlab.store import RunStore

    if not project.has_store:
        return set()
    with RunStore(project.store) as store:
        if all_runs:
            rows = store.conn.execute("SELECT result_key FROM run_candidates").fetchall()
            return {str(r[0]) for r in rows}
        run = store.latest_run(finished_only=True)
        if run is None:
            return set()
        return {str(r["result_key"]) for r in store.run_candidates(run["id"])}


def current_keys(project: Project) -> set[str]:
    """Result keys of the candidates in adaptlab.yaml now: what the next run would use.

    So ``run -c zero-shot`` (a latest run without the fine-tune) followed by ``clean``
    keeps the fine-tuned model that the next full run reuses. Empty when the project
    cannot be split as it stands (then only the runs decide).
    """
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine.runner import result_key

    try:
        split = project.split()
        return {result_key(project, c, split) for c in project.config.candidates}
    except AdaptlabError:
        return set()


def stored_keys(project: Project) -> set[str]:
    from adaptlab.store import RunStore

    if not project.has_store:
        return set()
    with RunStore(project.store) as store:
        return {str(r[0]) for r in store.conn.execute("SELECT key FROM results").fetchall()}


def plan_clean(project: Project, *, everything: bool = False, all_runs: bool = False) -> CleanPlan:
    """What ``clean`` would remove: every entry no kept result references.

    Kept: checkpoints of the latest finished run's results (``all_runs``: of any run's)
    and of the candidates as adaptlab.yaml defines them now, and folders holding a resume
    checkpoint (``last.pt``) of a fine-tune with no stored result yet, which ``adaptlab
    run`` would resume. ``everything`` keeps nothing.
    """
    plan = CleanPlan()
    folders = [checkpoints_folder(project), checkpoints_folder(project, "exports")]
    if folders == [None, None]:
        return plan
    keep = set()
    if not everything:
        keep = referenced_keys(project, all_runs=all_runs) | current_keys(project)
    stored = stored_keys(project) if not everything else set()
    for folder in folders:
        for entry in sorted(folder.iterdir()) if folder is not None else []:
            if entry.name in keep and not entry.is_symlink():
                plan.kept.append(entry)
                continue
            last = entry / "last.pt"
            resumable = (
                not everything
                and not entry.is_symlink()
                and entry.is_dir()
                and entry.name not in stored
                and os.path.lexists(last)
                and stat.S_ISREG(os.lstat(last).st_mode)
            )
            if resumable:
                plan.resumable.append(entry)
                continue
            plan.remove.append((entry, _size(entry)))
    return plan


def _remove(entry: Path) -> None:
    from adaptlab.store.files import os_error

    try:
        mode = os.lstat(entry).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(entry)  # removes links inside as links; never follows them
        else:
            entry.unlink()  # a file, or a link (the link itself, not what it points to)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise os_error(exc, "a checkpoint folder") from exc


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _refuse_while_running(holder: str) -> None:
    from adaptlab.core.errors import AdaptlabError

    raise AdaptlabError(
        f"a run is in progress on this project ({holder}); its checkpoints are in use",
        fix="run 'adaptlab clean' after it has finished",
        code="busy",
    )


@click.command()
@project_option
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option(
    "--keep-all-runs",
    is_flag=True,
    help="Keep the checkpoints of every run's results, not only the latest finished run's.",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Remove every checkpoint, unfinished fine-tunes included (they then start again).",
)
def clean(project_dir: str, dry_run: bool, keep_all_runs: bool, everything: bool) -> None:
    """Remove checkpoints that neither the latest finished run nor adaptlab.yaml uses.

    Checkpoints of an unfinished fine-tune (which 'adaptlab run' resumes) are kept
    unless --all; exported model folders (.adaptlab/exports, made by predict -c and
    serve -c) follow the same rule. Nothing outside those two folders is touched; links
    are removed as links, never followed.
    """
    from adaptlab.engine.project import Project
    from adaptlab.store.lock import RunLock

    if everything and keep_all_runs:
        raise click.UsageError("--all keeps nothing; leave out --keep-all-runs")
    project = Project.load(project_dir)
    lock = RunLock(project.run_lock_path)
    try:
        if not dry_run and (
            checkpoints_folder(project) is not None
            or checkpoints_folder(project, "exports") is not None
        ):
            lock.acquire(on_wait=_refuse_while_running)
        plan = plan_clean(project, everything=everything, all_runs=keep_all_runs)
        verb = "would remove" if dry_run else "removed"
        root = project.root
        for entry, size in plan.remove:
            kind = " (a link; what it points to is left alone)" if entry.is_symlink() else ""
            if not dry_run:
                _remove(entry)
            console.print(f"{verb} {entry.relative_to(root)}  {_mb(size)}{kind}", markup=False)
    finally:
        lock.release()
    if plan.resumable:
        console.print(
            f"kept {plural(len(plan.resumable), 'unfinished fine-tune')} that 'adaptlab run' "
            "resumes "
            "(--all removes them)",
            markup=False,
        )
    which = "any run's" if keep_all_runs else "the latest finished run's"
    if plan.kept:
        console.print(
            f"kept {plural(len(plan.kept), 'checkpoint')} of {which} results or of the "
            "candidates "
            "in adaptlab.yaml",
            markup=False,
        )
    if not plan.remove:
        console.print("nothing to remove", markup=False)
        return
    freed = "would free" if dry_run else "freed"
    console.print(
        f"{freed} {_mb(plan.freed)} in {len(plan.remove)} entr"
        f"{'y' if len(plan.remove) == 1 else 'ies'}",
        markup=False,
    )
