"""Run a bundle's training, inference or evaluation: ``monai-unets train|infer|evaluate <bundle> [overrides]``.

These commands are thin wrappers over ``python -m monai.bundle run``: they fill in the config files
(train: ``train.yaml``; infer: ``inference.yaml``; evaluate: ``train.yaml`` + ``evaluate.yaml``), the metadata,
the logging configuration and the bundle root, check every override against the configs, print the full
``python -m monai.bundle run`` command and run it. Everything that command accepts still works on its own.

Overrides are the bundle's config keys, as for ``python -m monai.bundle run``: ``--max_epochs 2``,
``--dataset_dir /data/isic2018``, ``--device "\\$torch.device('cpu')"``, ``--train#dataloader#num_workers 0``.
A key the configs do not have is an error naming the closest one they have: a typo never silently trains
with the default. The value of a path key (``*_dir``, ``*_file``, ``datalist``) is the path as typed, with a
leading ``~`` expanded: ``#``, ``$``, ``@`` and ``%`` in it are part of the name, not MONAI's config syntax.

The bundle is a folder (one that holds ``configs/metadata.json``, used in place: weights in ``models/``,
logs in ``logs/``, evaluation in ``eval/``) or the name of a shipped bundle (``monai-unets list``). A shipped
bundle is first copied to ``--workdir`` (default: a folder of its name in the current directory) and runs
from there, as the installed package may not be writable; later commands reuse that copy, its weights and
any edit you make to its configs.

Examples::

    monai-unets train egeunet_skin_lesion --dataset_dir /data/isic2018 --max_epochs 50
    monai-unets infer egeunet_skin_lesion --input_dir /data/new_images --output_dir /data/masks
    monai-unets evaluate egeunet_skin_lesion --dataset_dir /data/isic2018 --quiet
    monai-unets train ./my_bundle --dataset_dir /data --tracking mlflow
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from monai_unets.bundles import bundle_dir, list_bundles
from monai_unets.bundles.overrides import (
    check_overrides,
    expand_path,
    literal_path,
    override_argument,
    parse_overrides,
    path_argument,
)
from monai_unets.handlers.errors import point_at_null_device

from .cli import path_option

__all__ = ["CONFIG_FILES", "bundle_command", "make_command", "resolve_bundle", "run_bundle_process"]

logger = logging.getLogger(__name__)

#: Command -> the config files it runs, merged in this order (as the bundles' docs give them).
CONFIG_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.yaml",),
    "infer": ("inference.yaml",),
    "evaluate": ("train.yaml", "evaluate.yaml"),
}

# prctl's option that sends the calling process a signal when its parent ends (linux/prctl.h)
_PR_SET_PDEATHSIG = 1

# command -> what a bundle process stopped by a signal leaves, said with the signal
_STOPPED: dict[str, str] = {
    "train": "the training goes on after its last saved epoch when the same command runs again.",
    "infer": "the cases it had not finished have no outputs from this run (files an earlier run wrote for them are "
    "still in the output folder under the same names), and failures.csv does not list them.",
    "evaluate": "the cases it had not finished have no metrics, and its tables and report are not written.",
}

# command -> (config key, default folder in the bundle, what is there): printed when the run ends
_RESULTS: dict[str, tuple[str, str, str]] = {
    "train": (
        "ckpt_dir",
        "models",
        "weights and, in the 3D bundles, their plan (model.pt, plan.json; a fold: model_fold<k>.pt, plan_fold<k>.json)",
    ),
    "infer": ("output_dir", "eval", "predictions"),
    "evaluate": ("eval_dir", "eval", "metrics, overlays and report.html"),
}
# what the commands set themselves
_FILLED_IN = frozenset({"meta_file", "config_file", "logging_file", "bundle_root"})


def resolve_bundle(bundle: str, workdir: str | None = None, copy: bool = True) -> Path:
    """The folder a bundle runs from: ``bundle`` itself if it is a bundle folder, else a copy of a shipped bundle.

    Args:
        bundle: a bundle folder (with ``configs/metadata.json``) or the name of a shipped bundle.
        workdir: where a shipped bundle is copied; default ``./<name>``. An existing copy is reused.
        copy: copy a shipped bundle that has no copy yet; ``False`` (``--dry-run``) only names the folder it would
            be copied to, and writes nothing.

    Raises:
        ValueError: ``bundle`` is neither, or ``workdir`` exists and is not a bundle.

    Example::

        >>> resolve_bundle("egeunet_skin_lesion", "/tmp/runs/skin")  # doctest: +SKIP
        PosixPath('/tmp/runs/skin')
    """
    path = Path(bundle).expanduser()
    shipped = bundle in list_bundles()
    # a shipped bundle's name given with --workdir runs there, though a folder of that name is in the current one
    if (path / "configs" / "metadata.json").is_file() and not (shipped and workdir):
        if workdir:
            logger.warning("%s is a bundle folder and runs in place; --workdir %s is for shipped ones", path, workdir)
        if shipped:  # the copy an earlier command made under the bundle's name, reused after an upgrade too
            _warn_on_version_change(path.resolve(), bundle_dir(bundle))
        return path.resolve()
    if not shipped:
        if path.exists():
            raise ValueError(f"{path} is not a bundle: it has no configs/metadata.json.")
        raise ValueError(f"no bundle folder or shipped bundle named {bundle!r}; shipped: {', '.join(list_bundles())}.")
    target = Path(workdir or bundle).expanduser().resolve()
    if (target / "configs" / "metadata.json").is_file():
        _warn_on_version_change(target, bundle_dir(bundle))
        logger.info("using the bundle copy in %s", target)
        return target
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} exists and is not a bundle; give another --workdir for {bundle}.")
    if not copy:
        return target
    # a copy under a temporary name first, so an interrupted copy never looks like a bundle
    partial = target.with_name(f".{target.name}.copying")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(bundle_dir(bundle), partial, ignore=shutil.ignore_patterns("models", "logs", "eval", "__pycache__"))
    if target.exists():
        target.rmdir()
    partial.rename(target)
    logger.info("copied the bundle %s to %s; its weights, logs and results go there", bundle, target)
    return target


def _version(bundle: Path) -> str:
    return str(json.loads((bundle / "configs" / "metadata.json").read_text()).get("version", "?"))


def _warn_on_version_change(copy: Path, shipped: Path) -> None:
    if _version(copy) != _version(shipped):
        logger.warning(
            "the bundle copy in %s is version %s, the installed bundle is %s: this run uses the copy's configs. For "
            "the installed version give another --workdir for a fresh copy, and copy into its models/ the weights "
            "to keep (model.pt, in the 3D bundles with its plan.json, and checkpoint.pt to resume); the changelog "
            "in its configs/metadata.json says what changed.",
            copy,
            _version(copy),
            _version(shipped),
        )


def bundle_command(
    bundle: Path, configs: Sequence[str], overrides: Sequence[tuple[str, object]] | Mapping[str, object] = ()
) -> list[str]:
    """The ``python -m monai.bundle run`` command for ``configs`` of ``bundle`` with overrides.

    Args:
        bundle: the bundle folder.
        configs: config file names in ``configs/`` (or paths), merged in this order.
        overrides: ``(key, value)`` pairs (or a mapping), passed as ``--key value``.

    Example::

        >>> bundle_command(Path("b"), ["train.yaml"], {"max_epochs": 2})[3:]  # doctest: +NORMALIZE_WHITESPACE
        ['run', '--meta_file', 'b/configs/metadata.json', '--config_file', 'b/configs/train.yaml',
         '--logging_file', 'b/configs/logging.conf', '--bundle_root', 'b', '--max_epochs', '2']
    """
    files = [str(bundle / "configs" / name) for name in configs]
    # a JSON list reads as a Python list to `monai.bundle run` and prints without escaped quotes
    config = files[0] if len(files) == 1 else json.dumps(files)
    command = [sys.executable, "-m", "monai.bundle", "run"]
    command += ["--meta_file", str(bundle / "configs" / "metadata.json"), "--config_file", config]
    command += ["--logging_file", str(bundle / "configs" / "logging.conf")]
    command += ["--bundle_root", path_argument("bundle_root", str(bundle))]
    pairs = overrides.items() if isinstance(overrides, Mapping) else overrides
    for key, value in pairs:
        command += [f"--{key}", override_argument(key, str(value))]
    return command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bundle", type=path_option, help="a bundle folder, or the name of a shipped bundle (see `monai-unets list`)"
    )
    parser.add_argument(
        "--workdir",
        type=path_option,
        default=None,
        help="where a shipped bundle is copied and runs (default: ./<bundle name>)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="warnings and errors only: no progress lines (the config key `quiet`)"
    )
    parser.add_argument(
        "--tracking",
        default=None,
        help="experiment tracking of monai.bundle: `mlflow` (needs the `mlflow` extra; default store: the SQLite "
        "file <bundle>/mlruns.db; set --tracking_uri, --experiment_name, --run_name to change it)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the overrides and print the command without running it; writes nothing (no bundle copy)",
    )
    parser.epilog = (
        "Any other --KEY VALUE is a config override passed to `python -m monai.bundle run` "
        "(e.g. --max_epochs 2 --dataset_dir /data); unknown keys are errors."
    )


def _run(task: str, args: argparse.Namespace) -> int:
    typed = parse_overrides(getattr(args, "overrides", None) or [])
    overrides = [(key, expand_path(key, value)) for key, value in typed]
    filled = sorted({key for key, _ in overrides} & _FILLED_IN)
    if filled:
        raise ValueError(f"{', '.join('--' + k for k in filled)}: set by `monai-unets {task}`; give a bundle folder.")
    bundle = resolve_bundle(args.bundle, args.workdir, copy=not args.dry_run)
    # a dry run of a shipped bundle not copied yet checks the overrides against the configs the copy would have
    source = bundle if (bundle / "configs").is_dir() else bundle_dir(args.bundle)
    configs = CONFIG_FILES[task]
    if args.quiet:
        overrides.append(("quiet", "True"))
    if args.tracking:
        keys = {key for key, _ in overrides}
        overrides.append(("tracking", args.tracking))
        if args.tracking == "mlflow" and "tracking_uri" not in keys:
            # a local SQLite file next to the bundle's weights: no server needed, readable by `mlflow ui`
            # made from the bundle's path, so carried as typed as the path keys are (a '#' in it became '::')
            overrides.append(("tracking_uri", literal_path(f"sqlite:///{bundle / 'mlruns.db'}")))
    check_overrides([source / "configs" / name for name in configs], [k for k, _ in overrides], bool(args.tracking))
    command = bundle_command(bundle, configs, overrides)
    print(f"$ {shlex.join(command)}", flush=True)
    if args.dry_run:
        return 0
    status = run_bundle_process(command, task=task)
    if status == 0:
        # where the results are, also after a --quiet run (the bundles' default folders unless overridden)
        given = dict(overrides)
        key, default, what = _RESULTS[task]
        print(f"{what}: {given.get(key, bundle / default)}")
    return status


def _stdout_is_a_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _pass_on(source: IO[bytes], fd: int) -> None:
    """Copies the bundle process's output to ``fd`` to its end; once ``fd`` cannot be written, drops the rest."""
    with source:
        while chunk := os.read(source.fileno(), 1 << 16):
            try:
                while chunk:
                    chunk = chunk[os.write(fd, chunk) :]
            except OSError as error:
                if not isinstance(error, BrokenPipeError):
                    print(f"the bundle process's output is dropped from here on: {error}", file=sys.stderr, flush=True)
                # the bundle process goes on to its end, its output read and dropped so that it never waits on it
                point_at_null_device(fd)


def _ends_with_this_process() -> Callable[[], None] | None:
    """What the bundle process runs before its program on Linux: it is sent SIGTERM when this process ends without
    passing a signal on (SIGKILL, the out-of-memory killer), where it had gone on writing, holding its output
    folder's lock against a run started again. Elsewhere ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def end_with_parent() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # this process ended before the setting was made
            os.kill(os.getpid(), signal.SIGTERM)

    return end_with_parent


def run_bundle_process(command: Sequence[str], grace_s: float = 10.0, task: str = "infer") -> int:
    """Runs ``command`` (the bundle process) to its end and gives its exit status, that of a shell for a signal.

    A SIGTERM or SIGHUP sent to this process is passed on to the bundle process, which would otherwise keep
    running and writing after the command had been stopped; on Linux it is sent SIGTERM when this process ends
    without passing a signal on (SIGKILL). Ctrl-C reaches both processes from the terminal; this
    one then waits for the bundle process to stop, passing the interrupt on after ``grace_s`` seconds if it did
    not get it, or at a second interrupt, which the first one's message invites. A bundle process ended by a
    signal (SIGKILL from the system's out-of-memory killer) is reported in one line and gives 128 + the signal's
    number, as a shell does.

    Where standard output is a pipe, the bundle process writes into this process, which passes its output on: a
    reader that stops early (``| head``) then ends the output, never the run, and the bundle process never writes
    into a pipe that has no reader (whose first log lines, before the bundle config's ``initialize``, would print
    tracebacks).

    Args:
        command: the command line to run.
        grace_s: seconds to wait after an interrupt before passing it on.
        task: the command the bundle process runs (``train``, ``infer``, ``evaluate``), whose outputs a process
            stopped by a signal is said to leave as they are.

    Example::

        >>> run_bundle_process([sys.executable, "-c", "pass"])
        0
    """
    passing_on = None
    ending = _ends_with_this_process()
    if _stdout_is_a_pipe():
        sys.stdout.flush()
        child = subprocess.Popen(list(command), stdout=subprocess.PIPE, preexec_fn=ending)
        passing_on = threading.Thread(target=_pass_on, args=(child.stdout, sys.stdout.fileno()), daemon=True)
        passing_on.start()
    else:
        child = subprocess.Popen(list(command), preexec_fn=ending)
    # signal handlers can only be set from the main thread (not from a notebook's or a server's worker)
    main_thread = threading.current_thread() is threading.main_thread()
    passed_on = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None and main_thread]
    previous = {s: signal.signal(s, lambda number, _frame: child.send_signal(number)) for s in passed_on}
    interrupts = 0
    announce = False
    try:
        while True:
            try:
                if announce:
                    # two interrupts sent before this process handled the first count as one (the system keeps one
                    # pending signal of a kind): the user learns when a second one will count. Said here, where a
                    # second interrupt during the saying is caught as one, not in the handler of the first
                    announce = False
                    print(
                        f"interrupted: the bundle process has {grace_s:g} s to stop; interrupt again to stop it now",
                        file=sys.stderr,
                        flush=True,
                    )
                # after an interrupt the bundle process has grace_s to stop on its own (a terminal's Ctrl-C reaches it
                # too); this process waits for it to end in any case, so that no run goes on unseen
                status = child.wait(timeout=grace_s if interrupts == 1 else None)
                break
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts > 1:  # a second interrupt: passed on at once
                    child.send_signal(signal.SIGINT)
                else:
                    announce = True
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
                interrupts = 2
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if passing_on is not None:
        # the output ends with the bundle process, or with the last of its worker processes
        passing_on.join(grace_s)
    if status < 0:
        name = signal.Signals(-status).name
        cause = " (as the system's out-of-memory killer does)" if -status == getattr(signal, "SIGKILL", 9) else ""
        print(f"the bundle process was stopped by {name}{cause}: {_STOPPED[task]}", file=sys.stderr, flush=True)
        return 128 - status
    return status


def make_command(task: str) -> tuple[Any, Any]:
    """``add_arguments`` and ``run`` of the ``monai-unets <task>`` command (``train``, ``infer``, ``evaluate``)."""
    if task not in CONFIG_FILES:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(CONFIG_FILES)}.")

    def run(args: argparse.Namespace) -> int:
        return _run(task, args)

    return _add_arguments, run
