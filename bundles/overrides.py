"""Checks of the config overrides of a bundle run: a key the configs do not have is an error naming the closest one.

``monai-unets train|infer|evaluate`` check their overrides before they start ``python -m monai.bundle run``;
the bundles' configs call :func:`check_command_line` first in ``initialize``, so that the same check applies to a
plain ``python -m monai.bundle run ... --max_epoch 2`` (which MONAI would accept as a new, unused key).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "check_command_line",
    "check_overrides",
    "config_ids",
    "expand_path",
    "literal_path",
    "parse_overrides",
    "override_argument",
    "path_argument",
]

# Arguments of `monai.bundle run` itself (not config keys); the tracking settings MONAI adds to the config
# when tracking is on are allowed with --tracking.
_RUN_ARGUMENTS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}
)


# config keys whose value is a path: the configs' folders and files (not handler flags such as iteration_log)
_PATH_KEY = re.compile(r"(^|#)(datalist|bundle_root|failure_log|\w+_(dir|file|path))$")

# what MONAI's config parser reads in a string instead of keeping it: a leading `$` (expression), `@` (reference)
# or `%` (macro), `#` (its old id separator, which it turns into `::` anywhere in the text) and relative ids
_READ_BY_MONAI = re.compile(r"^[$@%]|#|[@%]::")


def _is_path_key(key: str) -> bool:
    # monai.bundle run's own files (config_file, ...) also take lists
    return key not in _RUN_ARGUMENTS and bool(_PATH_KEY.search(key))


def _as_read(value: str) -> Any:
    """``value`` as ``python -m monai.bundle run`` (python-fire) reads a command-line value: a Python literal
    where it parses as one (``2024`` an int, ``1e3`` a float, ``a,b`` a tuple), else the text."""
    from fire import parser

    return parser.DefaultParseValue(value)


def literal_path(path: str) -> str:
    r"""The config value that MONAI's config parser reads as ``path`` itself.

    The parser turns ``#`` into ``::`` in every string of a config and reads a string starting with ``$``, ``@``
    or ``%`` as an expression, a reference or a macro: ``res#1`` would become the folder ``res::1``, and ``@eaDir``
    a reference to a key ``eaDir``. Such a path is given as an expression of a Python string in which ``#``,
    ``@``, ``%`` (and quotes, backslashes and unprintable characters) are escapes (``\x23``): the parser leaves
    it alone, and Python reads the path back. Any other path is its own value.

    Args:
        path: the path as the user wrote it.

    Example::

        >>> print(literal_path("res#1"), literal_path("@eaDir"), literal_path("/data/ct 1"))
        $"res\x231" $"\x40eaDir" /data/ct 1
    """
    if not _READ_BY_MONAI.search(path):
        return path
    return '$"' + "".join(map(_escaped, path)) + '"'


def _escaped(char: str) -> str:
    """``char`` in a double-quoted Python string that holds no character MONAI's config parser reads."""
    if char in '#@%"\\':
        return f"\\x{ord(char):02x}"
    return char if char.isprintable() else repr(char)[1:-1]


def expand_path(key: str, value: str) -> str:
    """``value`` with a leading ``~`` expanded to the home folder where ``key`` is a path key, as a shell does.

    ``--input_dir=~/scans`` (and a quoted ``~``) reaches the program unexpanded; the bundle would read a folder
    named ``~`` in the current one.

    Args:
        key: the override key.
        value: its value as the user wrote it.

    Example::

        >>> expand_path("input_dir", "~/scans") == os.path.expanduser("~/scans"), expand_path("run_name", "~x")
        (True, '~x')
    """
    return os.path.expanduser(value) if _is_path_key(key) else value


def path_argument(key: str, value: str) -> str:
    r"""The command-line text that gives the config key ``key`` the path ``value`` unchanged.

    ``python -m monai.bundle run`` reads each value as a Python literal where it can: a folder named ``2024``
    would reach the config as the number 2024, ``a,b`` as a tuple, and ``-x`` would be taken for a flag; the
    config parser then reads ``#``, ``$``, ``@`` and ``%`` (see :func:`literal_path`). Such a path of a path key
    (``*_dir``, ``*_file``, ``datalist``, ...) is passed quoted for Python, or as a string expression; other
    values unchanged.

    Args:
        key: the override key.
        value: its value as the user wrote it.

    Example::

        >>> print(path_argument("output_dir", "2024"), path_argument("output_dir", "res#1"), path_argument("seed", "2"))
        '2024' $"res\x231" 2
    """
    if not _is_path_key(key):
        return value
    text = literal_path(value)
    if text.startswith("-") or _as_read(text) != text:
        return repr(text)
    return text


def override_argument(key: str, value: str) -> str:
    """The command-line text that gives the config key ``key`` the value ``value`` as the user means it.

    ``None`` becomes the expression ``$None``: ``python -m monai.bundle run`` leaves out every override whose value
    reads as ``None``, so ``--cpu_threads None`` had kept the config's own value, silently. The value of a path key
    is a path, passed as typed (:func:`path_argument`: a folder named ``None`` too); other values unchanged.

    Args:
        key: the override key.
        value: its value as the user wrote it.

    Example::

        >>> print(override_argument("cpu_threads", "None"), override_argument("output_dir", "2024"))
        $None '2024'
    """
    if value == "None" and not _is_path_key(key):
        return "$None"
    return path_argument(key, value)


def _path_problem(key: str, value: str, config_files: Sequence[str | Path]) -> str | None:
    """Why ``python -m monai.bundle run`` would not give a path key the path ``value``, as typed; ``None`` if it
    would. A value starting with ``$`` or ``@`` is MONAI's expression or reference: a problem only where the
    configs (``config_files``) cannot resolve it, as with a folder named ``@eaDir``. (A ``%`` macro MONAI resolves
    while it reads the configs, before their ``initialize`` can check anything.)"""
    if not _is_path_key(key):
        return None
    if value.startswith(("$", "@")):
        return _unresolved(key, value, _load(config_files))
    if value.startswith("-"):
        return "a value starting with '-' is taken for an option"
    if value.startswith("~"):
        return "'~' is not expanded here, and would be a folder of that name"
    if _READ_BY_MONAI.search(value) and not value.startswith(("$", "@", "%")):
        return _rewritten(key, value)
    read = _as_read(value)
    return None if isinstance(read, str) else f"read as the {type(read).__name__} {read!r}, not as a path"


def _rewritten(key: str, value: str) -> str:
    """How MONAI's config parser changes the path ``value`` of the key ``key``, which holds a ``#`` or a relative id
    (``%::``, ``@::``) after its first character: it turns ``#`` into ``::`` and a relative id into the id of the
    key's parent, so that ``res#1`` becomes ``res::1`` and ``a%::b`` becomes ``a%b``, with no error."""
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    read = ConfigParser.resolve_relative_ids(ReferenceResolver.normalize_id(key), value)
    syntax = "'#' as its id separator" if "#" in value else "'%::' and '@::' as relative ids"
    return f"MONAI's config parser reads {syntax}, and the path would be {read}"


def _unresolved(key: str, value: str, config: Any) -> str | None:
    """Why MONAI's config parser cannot resolve the expression or reference ``value`` of the key ``key`` in
    ``config`` (a ``ConfigParser``); ``None`` where it can."""
    from monai.bundle import ConfigParser
    from monai.bundle.config_item import ConfigExpression
    from monai.bundle.reference_resolver import ReferenceResolver

    text = ConfigParser.resolve_relative_ids(ReferenceResolver.normalize_id(key), value)
    reads = "MONAI's config parser reads"
    # MONAI reads `@id` in an expression, or as the whole value, as a reference
    for ref in ReferenceResolver.match_refs_pattern(text):
        # `_meta_` is the metadata file's content, which MONAI merges in under that key
        if ref not in config and ref.partition("::")[0] != "_meta_":
            return f"{reads} '@{ref}' as a reference to a config key, and there is no key {ref!r}"
    if not ConfigExpression.is_expression(text):
        return None
    reads += " a value starting with '$' as a Python expression, and this one"
    try:
        # as MONAI evaluates it: each reference replaced by a look-up in the resolved content
        code = ReferenceResolver.id_matcher.sub(ReferenceResolver._vars, ReferenceResolver.normalize_id(text))
        tree = ast.parse(code[1:], mode="eval")
    except SyntaxError as error:
        return f"{reads} is not Python ({error.msg})"
    unknown = sorted(_free_names(tree) - _known_names(config))
    return f"{reads} uses {unknown[0]!r}, which is not defined" if unknown else None


def _free_names(tree: ast.AST) -> set[str]:
    """The names an expression reads that it does not bind itself (in a comprehension or a lambda)."""
    read, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound


def _known_names(config: Any) -> set[str]:
    """The names a config expression may use: Python's builtins, MONAI's default globals, the configs' imports
    and its references."""
    import builtins

    from monai.bundle.config_item import ConfigExpression
    from monai.bundle.reference_resolver import ReferenceResolver

    names = set(dir(builtins)) | set(config.globals) | {ReferenceResolver._vars}
    for item in map(config.__getitem__, config_ids(config.get())):
        if ConfigExpression.is_import_statement(item):
            for node in ast.walk(ast.parse(item[1:])):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names |= {alias.asname or alias.name.partition(".")[0] for alias in node.names}
    return names


def _shell_word(text: str) -> str:
    """``text`` quoted for a POSIX shell, in double quotes where it holds a single quote (``'2024'``)."""
    if "'" not in text:
        return shlex.quote(text)
    return '"' + re.sub(r'(["$`]|\\(?=["$`\\]|$))', r"\\\1", text) + '"'


def parse_overrides(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs ``(key, value)`` of ``--key value`` / ``--key=value`` tokens, in order.

    ``["--max_epochs", "2", "--amp=false", "--flag"]`` gives
    ``[("max_epochs", "2"), ("amp", "false"), ("flag", "True")]``.

    A key without a value (followed by another ``--key`` or at the end) is ``True``, as ``monai.bundle run``
    reads it; but a path key (``*_dir``, ``*_file``, ``datalist``, ...) without a value, or with an empty one, is an
    error: ``--output_dir "$OUT"`` with ``OUT`` unset would write into a folder named ``True``, or the current one.

    Args:
        tokens: the command-line words of the overrides, without the command and run id: ``--key value``,
            ``--key=value`` or ``--key`` alone. A word after ``--key`` that does not start with ``--`` is its value,
            so a value may start with one ``-`` (``--learning_rate -1``). Values are kept as text, ``#`` and
            ``::`` in keys as given.

    Raises:
        ValueError: a token that is neither ``--key`` nor the value of one; a path key without a path.

    Example::

        >>> parse_overrides(["--max_epochs", "2", "--amp=false", "--flag"])
        [('max_epochs', '2'), ('amp', 'false'), ('flag', 'True')]
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
            elif not _is_path_key(key):
                value = "True"
        if _is_path_key(key) and not value.strip():
            raise ValueError(f"--{key} needs a path.")
        pairs.append((key, value))
        i += 1
    return pairs


def config_ids(config: Any, prefix: str = "") -> Iterator[str]:
    """Every id of a raw config, nested ones joined with ``#`` (``train``, ``train#trainer``, ...).

    Each id comes before the ids under it; the items of a list are numbered from 0.

    Args:
        config: a raw config, as ``ConfigParser.get()`` gives it: dictionaries and lists, nested; other values
            have no ids under them.
        prefix: text put before each id: the parent's id and ``#`` in the recursion, ``""`` at the top.

    Example::

        >>> list(config_ids({"train": {"trainer": {"max_epochs": 2}}, "handlers": [{"_target_": "StatsHandler"}]}))
        ['train', 'train#trainer', 'train#trainer#max_epochs', 'handlers', 'handlers#0', 'handlers#0#_target_']
    """
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
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    config = _load(config_files)
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


def _load(config_files: Sequence[str | Path]) -> Any:
    """The ``ConfigParser`` of the config files, merged in this order as ``monai.bundle run`` merges them."""
    from monai.bundle import ConfigParser

    return ConfigParser(ConfigParser.load_config_files([str(f) for f in config_files]))


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
        SystemExit: an override key the configs do not have; the message names the closest one they have. Also an
            override of ``None``, which the run would leave out (``$None`` is kept).

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
    try:
        pairs = parse_overrides(tokens)
        values = dict(pairs)
        if "args_file" in values or "config_file" not in values:
            return
        config_files = _config_files(values["config_file"])
        for key, value in pairs:
            if value == "None" and not _is_path_key(key):
                raise ValueError(
                    f"--{key} None: python -m monai.bundle run leaves out an override of None, so the config's own "
                    f"value would stay; give it as --{key} '$None' (the monai-unets commands do this themselves)."
                )
            problem = _path_problem(key, value, config_files)
            if problem:
                given = _shell_word(path_argument(key, expand_path(key, value)))
                raise ValueError(
                    f"--{key} {value}: {problem}; give it as --{key} {given} (the monai-unets commands do this "
                    "themselves)."
                )
        check_overrides(config_files, [k for k, _ in pairs], tracking="tracking" in values)
    except ValueError as error:
        # SystemExit passes through MONAI's wrapping of expression errors: one line, not two tracebacks
        raise SystemExit(f"python -m monai.bundle run: error: {error}") from None
