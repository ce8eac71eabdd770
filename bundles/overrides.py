"""Checks of the config overrides of a bundle run: a key the configs do not have is an error naming the closest one.

``monai-unets train|infer|evaluate`` check their overrides before they start ``python -m monai.bundle run``;
the bundles' configs call :func:`check_command_line` first in ``initialize``, so that the same check applies to a
plain ``python -m monai.bundle run ... --max_epoch 2`` (which MONAI would accept as a new, unused key).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_command_line", "check_overrides", "config_ids", "parse_overrides", "path_argument"]

# Arguments of `monai.bundle run` itself (not config keys); the tracking settings MONAI adds to the config
# when tracking is on are allowed with --tracking.
_RUN_ARGUMENTS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}
)


# config keys whose value is a path: the configs' folders and files
_PATH_KEY = re.compile(r"(^|#)(datalist|bundle_root|\w+_(dir|file|path|log))$")


def _is_path_key(key: str) -> bool:
    # monai.bundle run's own files (config_file, ...) also take lists
    return key not in _RUN_ARGUMENTS and bool(_PATH_KEY.search(key))


def _as_read(value: str) -> Any:
    """``value`` as ``python -m monai.bundle run`` (python-fire) reads a command-line value: a Python literal
    where it parses as one (``2024`` an int, ``1e3`` a float, ``a,b`` a tuple), else the text."""
    from fire import parser

    return parser.DefaultParseValue(value)


def path_argument(key: str, value: str) -> str:
    """The command-line text that gives the config key ``key`` the path ``value`` unchanged.

    ``python -m monai.bundle run`` reads each value as a Python literal where it can: a folder named ``2024``
    would reach the config as the number 2024, ``a,b`` as a tuple, and ``-x`` would be taken for a flag. Such a
    path of a path key (``*_dir``, ``*_file``, ``datalist``, ...) is passed quoted for Python; other values
    unchanged.

    Args:
        key: the override key.
        value: its value as the user wrote it.

    Example::

        >>> path_argument("output_dir", "2024"), path_argument("output_dir", "out"), path_argument("max_epochs", "2")
        ("'2024'", 'out', '2')
    """
    if _is_path_key(key) and (value.startswith("-") or _as_read(value) != value):
        return repr(value)
    return value


def _path_problem(key: str, value: str) -> str | None:
    """Why ``python -m monai.bundle run`` would not give a path key the path ``value``, as typed; ``None`` if it
    would."""
    if not _is_path_key(key):
        return None
    if value.startswith("-"):
        return "a value starting with '-' is taken for an option"
    read = _as_read(value)
    return None if isinstance(read, str) else f"read as the {type(read).__name__} {read!r}, not as a path"


def parse_overrides(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs ``(key, value)`` of ``--key value`` / ``--key=value`` tokens, in order.

    ``["--max_epochs", "2", "--amp=false", "--flag"]`` gives
    ``[("max_epochs", "2"), ("amp", "false"), ("flag", "True")]``.

    A key without a value (followed by another ``--key`` or at the end) is ``True``, as ``monai.bundle run``
    reads it.

    Raises:
        ValueError: a token that is neither ``--key`` nor the value of one.
    """
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"expected an override --KEY VALUE, got {token!r}.")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "True"
        pairs.append((key, value))
        i += 1
    return pairs


def config_ids(config: Any, prefix: str = "") -> Iterator[str]:
    """Every id of a raw config, nested ones joined with ``#`` (``train``, ``train#trainer``, ...)."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(config, Mapping):
        items = config.items()
    elif isinstance(config, list):
        items = enumerate(config)
    else:
        return
    for key, value in items:
        name = f"{prefix}{key}"
        yield name
        yield from config_ids(value, f"{name}#")


def check_overrides(config_files: Sequence[str | Path], keys: Iterable[str], tracking: bool = False) -> None:
    """Checks that each override key is a key of the merged configs (or an argument of ``monai.bundle run``).

    A key under a component (a dictionary with ``_target_``) may also be any argument of the component's
    constructor that the config leaves at its default (``--train#trainer#epoch_length 10``).

    Args:
        config_files: the config files, merged in this order as ``monai.bundle run`` merges them.
        keys: the override keys, with ``#`` (or ``::``) for nested ones.
        tracking: experiment tracking is on, so its settings (``tracking_uri``, ``experiment_name``, ...) are keys.

    Raises:
        ValueError: ``unknown key 'max_epoch'; did you mean 'max_epochs'?``

    Example::

        >>> check_overrides(["configs/train.yaml"], ["max_epoch"])  # doctest: +SKIP
        ValueError: unknown key 'max_epoch' (configs/train.yaml); did you mean 'max_epochs'?
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    config = ConfigParser(ConfigParser.load_config_files([str(f) for f in config_files]))
    known = set(_RUN_ARGUMENTS)
    if tracking:
        known |= {k for settings in DEFAULT_EXP_MGMT_SETTINGS.values() for k in settings.get("configs", {})}
    for raw_key in keys:
        key = raw_key.replace("::", "#")
        # `_meta_` is the metadata file's content, which MONAI merges in under that key
        if key in known or key in config or key.partition("#")[0] == "_meta_":
            continue
        parent, _, name = key.rpartition("#")
        component = config[parent] if parent and parent in config else None
        candidates = sorted(known | set(config_ids(config.get())))
        if isinstance(component, Mapping) and "_target_" in component:
            parameters = _parameters(component)
            if parameters is None or name in parameters:
                continue  # a constructor argument the config leaves at its default, or one we cannot check
            candidates = [f"{parent}#{p}" for p in sorted(parameters)] + candidates
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        where = ", ".join(Path(f).name for f in config_files)
        hint = f"; did you mean {close[0]!r}?" if close else "; see the bundle's docs/README.md for its keys."
        raise ValueError(f"unknown key {raw_key!r} ({where}){hint}")


def _parameters(component: Mapping[str, Any]) -> set[str] | None:
    """Names of the arguments the component's ``_target_`` takes; ``None`` when it takes any or cannot be found."""
    import pydoc

    from monai.bundle.config_item import ComponentLocator, ConfigComponent

    import monai_unets  # noqa: F401 - registers the short names the configs use

    target = pydoc.locate(str(ConfigComponent(dict(component), locator=ComponentLocator()).resolve_module_name()))
    try:
        parameters = inspect.signature(target).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters)


def _config_files(value: str) -> list[str]:
    """The config files of a ``--config_file`` value as ``monai.bundle run`` reads it: a path, a list, or a,b."""
    text = value.strip()
    if text.startswith(("[", "(")):
        return [str(f) for f in ast.literal_eval(text)]
    if "," in text and not Path(text).is_file():
        return [f.strip() for f in text.split(",")]
    return [text]


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Checks the overrides of the ``python -m monai.bundle run`` command of this process against its configs.

    A bundle config calls it first in ``initialize``. It only acts in a process started as
    ``python -m monai.bundle run`` (also under ``torchrun``): a workflow built in another program (MONAI Label,
    a notebook, a test) has no command line to check. A run given ``--args_file`` is not checked, as the file
    may hold the config files and overrides.

    Args:
        argv: the command line; default ``sys.argv``.

    Raises:
        SystemExit: an override key the configs do not have; the message names the closest one they have.

    Example::

        >>> argv = ["/x/monai/bundle/__main__.py", "run", "--config_file", "train.yaml", "--max_epoch", "2"]
        >>> check_command_line(argv)  # doctest: +SKIP
        SystemExit: python -m monai.bundle run: error: unknown key 'max_epoch' (train.yaml); did you mean 'max_epochs'?
    """
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or Path(argv[0]).parts[-2:] != ("bundle", "__main__.py") or argv[1] != "run":
        return
    tokens = argv[2:]
    if tokens and not tokens[0].startswith("--"):
        tokens = tokens[1:]  # the run id
    pairs = parse_overrides(tokens)
    values = dict(pairs)
    if "args_file" in values or "config_file" not in values:
        return
    try:
        for key, value in pairs:
            problem = _path_problem(key, value)
            if problem:
                raise ValueError(
                    f'--{key} {value}: {problem}; give it quoted for Python, --{key} "{repr(value)}" (the '
                    "monai-unets commands do this themselves)."
                )
        check_overrides(_config_files(values["config_file"]), [k for k, _ in pairs], tracking="tracking" in values)
    except ValueError as error:
        # SystemExit passes through MONAI's wrapping of expression errors: one line, not two tracebacks
        raise SystemExit(f"python -m monai.bundle run: error: {error}") from None
