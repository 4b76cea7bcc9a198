"""Hydra composition for every subcommand, from the configs shipped inside the package."""
from __future__ import annotations

import copy
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Sequence

from kprtrack.errors import InputError


def config_dir() -> Path:
    return Path(str(resources.files("kprtrack.configs")))


def config_text(config_name: str) -> str:
    return (config_dir() / f"{config_name}.yaml").read_text(encoding="utf-8")


def _defaults_list(path: Path) -> list:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(path))
    return list(node.get("defaults") or []) if isinstance(node, dict) else []


def config_groups(config_name: str) -> list[tuple[str, str | None, dict[str, dict[str, str]]]]:
    """The config groups in ``configs/<config_name>.yaml``'s defaults list: (group, default option,
    {option: the other groups' defaults that option overrides}), options from ``configs/<group>/``."""
    groups = []
    for entry in _defaults_list(config_dir() / f"{config_name}.yaml"):
        if not isinstance(entry, dict):  # _self_, or a plain config such as eval@eval
            continue
        [(group, default)] = entry.items()
        if group.startswith("override "):  # override hydra/job_logging: ... (Hydra's own groups)
            continue
        folder = config_dir() / group
        options = {}
        for path in sorted(folder.glob("*.yaml")):
            overrides = {}
            for sub in _defaults_list(path):
                if isinstance(sub, dict):
                    [(key, value)] = sub.items()
                    if key.startswith("override /"):
                        overrides[key.removeprefix("override /")] = value
            options[path.stem] = overrides
        groups.append((group, default, options))
    return groups


def packaged_configs(config_name: str) -> list[tuple[str, str]]:
    """Plain configs placed under a key by ``configs/<config_name>.yaml`` (``- eval@eval``): (config, key)."""
    entries = _defaults_list(config_dir() / f"{config_name}.yaml")
    return [tuple(e.split("@", 1)) for e in entries if isinstance(e, str) and "@" in e]


def compose(config_name: str, overrides: Sequence[str] = (), require_values: bool = True, with_hydra: bool = False):
    """Compose ``configs/<config_name>.yaml`` with command-line style ``key=value`` overrides.

    Every problem is one InputError line naming the override or key: an unparsable override (with
    how to quote it; a plain value with non-ASCII letters is quoted here), an interpolation that does
    not resolve, a value of the wrong type for its default (``run.batch_size=abc``), and, with
    ``require_values``, a mandatory value (``???``) left unset in a stage's config (``dataset.path``).
    ``hydra.*`` and ``hydra/<group>=`` overrides are checked by Hydra (a launcher that is not
    installed...); ``with_hydra`` keeps the ``hydra`` node in the result. Works inside a running Hydra
    app too (a job of a sweep).
    """
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    overrides = [_readable_override(o) for o in overrides]
    try:
        with _outside_app(), initialize_config_dir(config_dir=str(config_dir()), version_base="1.3",
                                                   job_name="kprtrack"):
            full = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
            cfg = full
            if with_hydra:
                cfg = copy.deepcopy(full)
                with open_dict(cfg):
                    del cfg["hydra"]
            _check_values(cfg, overrides, lambda groups: hydra_compose(config_name=config_name, overrides=groups))
    except (HydraException, OmegaConfBaseException) as err:
        raise InputError(f"bad configuration for '{config_name}': {hydra_error(err)}") from None
    _check_interpolations(cfg)
    if require_values:
        _check_required(cfg)
    return full


PLUGINS_HINT = ("launcher and sweeper plugins are optional: pip install 'kprtrack[joblib]', '[submitit]', "
                "'[optuna]', '[ray]', or '[sweep]' for joblib, submitit and optuna")


def hydra_error(err: BaseException) -> str:
    """A Hydra or OmegaConf error as one line (without the config search path), with where to get
    a launcher or sweeper that is not installed."""
    text = " ".join(str(err).split("Config search path:")[0].split()) or type(err).__name__
    if "hydra/launcher" in text or "hydra/sweeper" in text:
        text += f" ({PLUGINS_HINT})"
    return text


@contextmanager
def _outside_app():
    """Hydra's compose API refuses to start inside a running Hydra app (a job of a sweep run by the
    basic launcher): set the app's Hydra aside meanwhile."""
    from hydra.core.global_hydra import GlobalHydra

    hydra_global = GlobalHydra.instance()
    running = hydra_global.hydra if hydra_global.is_initialized() else None
    if running is None:
        yield
        return
    hydra_global.clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        GlobalHydra.instance().initialize(running)


def _is_hydra_key(key: str) -> bool:
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def validate_sweep(config_name: str, overrides: Sequence[str], require_values: bool = True) -> None:
    """The overrides of a sweep (``key=a,b``, ``key=range(1,5)``, ``key=choice(a,b)``) or of ``--cfg``,
    one line per problem, before Hydra starts (whose errors are several lines, exit 1): composed
    with every sweep at its first value, then every other value of every sweep checked (a config group's
    option composed, a value's type against the key's default). Interval and glob sweeps (Optuna's
    search space) are left to the sweeper."""
    from hydra.errors import HydraException

    overrides = [_readable_override(o) for o in overrides]
    first, others = [], []
    for text in overrides:
        override = _parse_override(text)
        if not override.is_sweep_override():
            first.append(text)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except (HydraException, TypeError, ValueError, AttributeError):
            continue  # interval(...), glob(...): the sweeper's
        if not values:
            continue
        key = override.get_key_element()
        first.append(f"{key}={values[0]}")
        others += [(len(first) - 1, f"{key}={value}") for value in values[1:]]
    cfg = compose(config_name, first, require_values=require_values)
    groups_checked = set()
    for index, text in others:
        override = _parse_override(text)
        group = override.key_or_group.split("@")[0]
        if (config_dir() / group).is_dir() or _is_hydra_key(group) or override.is_delete():
            if text not in groups_checked:
                groups_checked.add(text)
                compose(config_name, [*first[:index], text, *first[index + 1:]], require_values=require_values)
            continue
        from omegaconf import OmegaConf

        default = OmegaConf.select(cfg, override.key_or_group, throw_on_resolution_failure=False)
        expected = _type_problem(default, override.value())
        if expected:
            shown = str(default).lower() if isinstance(default, bool) else repr(default)
            raise InputError(f"bad value {override.key_or_group}={override.value()!r}: must be {expected} "
                             f"(the default is {shown})")


QUOTING_HINT = ("values with characters other than letters A-Z, digits and -_./:\\ (non-ASCII letters, quotes, "
                "brackets, spaces at the ends) must be quoted for Hydra, inside the shell's quotes: "
                "'key=\"value\"', or in a list 'key=[\"a\",\"b\"]'")


def _parse_override(text: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(text)


def _readable_override(text: str) -> str:
    """``text`` if Hydra parses it; a non-ASCII plain value (a path such as /tmp/vidéo.mp4) quoted
    for Hydra; otherwise InputError saying how to quote."""
    from hydra.errors import HydraException

    try:
        _parse_override(text)
        return text
    except HydraException as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    key, eq, value = text.partition("=")
    plain = (eq and value and not value.isascii() and key.isascii() and not value.startswith(("[", "{"))
             and not any(c in value for c in "'\"") and not value.endswith("\\"))
    if plain:
        quoted = f'{key}="{value}"'
        try:
            if _parse_override(quoted).value() == value:
                return quoted
        except HydraException:
            pass
    raise InputError(f"cannot read the override {text!r} ({reason}): {QUOTING_HINT}")


def _check_values(cfg, overrides: list[str], compose_groups) -> None:
    """A value override whose type does not fit the key's default (composed with the same group
    choices): an integer, number or true/false key given something else."""
    from omegaconf import OmegaConf

    groups, values = [], []
    for text in overrides:
        override = _parse_override(text)
        group = override.key_or_group.split("@")[0]
        is_group = (config_dir() / group).is_dir() or _is_hydra_key(group)
        if is_group or override.is_delete():
            groups.append(text)
        elif not override.is_add():
            values.append(override.key_or_group)
    if not values:
        return
    base = compose_groups(groups)
    for key in values:
        default = OmegaConf.select(base, key, throw_on_resolution_failure=False)
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        expected = _type_problem(default, value)
        if expected:
            shown = str(default).lower() if isinstance(default, bool) else repr(default)
            raise InputError(f"bad value {key}={value!r}: must be {expected} (the default is {shown})")


def _type_problem(default, value) -> str | None:
    """What ``value`` should be, given the type of ``default`` (None: it fits)."""
    if value is None or default is None or isinstance(value, str) and value.startswith("${"):
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool) or str(value).lower() in ("true", "false")
        return None if ok else "true or false"
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) or _parses(value, int)
        return None if ok else "an integer"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) or _parses(value, float)
        return None if ok else "a number"
    return None


def _parses(value, kind) -> bool:
    if not isinstance(value, str):
        return False
    try:
        kind(value)
        return True
    except ValueError:
        return False


def _interpolations(node, prefix: str = ""):
    """(dotted key, raw text) of every leaf holding a ``${...}`` interpolation, in a plain container."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            yield from _interpolations(value, dotted + ".")
        elif isinstance(value, str) and "${" in value:
            yield dotted, value


def _check_interpolations(cfg) -> None:
    """Every ``${...}`` resolves (a ``???`` it points to is left to _check_required)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    for key, text in _interpolations(OmegaConf.to_container(cfg, resolve=False)):
        if "${hydra:" in text.replace(" ", ""):
            from hydra.core.hydra_config import HydraConfig

            if not HydraConfig.initialized():
                continue  # ${hydra:runtime.output_dir} and the like: resolved by the running Hydra app
        try:
            OmegaConf.select(cfg, key, throw_on_missing=True)
        except MissingMandatoryValue:
            continue
        except (OmegaConfBaseException, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot resolve {key}={text}: {reason}") from None


def _missing(node, prefix: str = ""):
    """Dotted keys of the mandatory values (``???``) in a plain container."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            yield from _missing(value, f"{prefix}{key}.")
        elif value == "???":
            yield f"{prefix}{key}"


def _check_required(cfg) -> None:
    """Mandatory values (``???``) of the stages and data set that will be built (nodes with a _target_)."""
    from omegaconf import OmegaConf

    for key in sorted(_missing(OmegaConf.to_container(cfg, resolve=False))):  # resolving: ${hydra:...} fails here
        parent = key.rpartition(".")[0]
        if parent and OmegaConf.select(cfg, f"{parent}._target_", default=None) is not None:
            raise InputError(f"missing value: {key} (add {key}=<value> to the command line)")


# Hydra's flags: with one of them, a command runs as a Hydra app (kprtrack/hydra_app.py).
HYDRA_FLAGS = ("--cfg", "-c", "--info", "-i", "--multirun", "-m", "--shell-completion", "-sc", "--hydra-help",
               "--resolve", "--package", "-p", "--config-dir", "-cd", "--run", "-r")


def has_hydra_flags(argv: Sequence[str]) -> bool:
    return any(arg in HYDRA_FLAGS for arg in argv)


def compose_command(config_name: str, argv: Sequence[str]):
    """Compose a subcommand's config. With one of Hydra's flags among the args (``--cfg [job|hydra|all]``,
    ``--info``, ``-m``, ``--shell-completion``, ...) the command runs as a Hydra app instead: the
    flag's output, or a sweep whose every job is the command with that job's overrides; then None."""
    argv = list(argv)
    if not has_hydra_flags(argv):
        return compose(config_name, argv)
    from kprtrack.cli import COMMAND_OPTIONS
    from kprtrack.hydra_app import CommandJob, hydra_main

    [command] = [c for c, name in COMMAND_OPTIONS.items() if name == config_name]
    hydra_main(command, argv, CommandJob(command))
    return None


def instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` with a readable error naming the ``_target_``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, InputError):
            raise cause from None
        # A constructor refusing a value (ValueError) or a key it does not take (TypeError) is a
        # configuration mistake: one line naming the backend, not a traceback.
        if isinstance(cause, (ValueError, TypeError)):
            target = node.get("_target_", "?") if hasattr(node, "get") else "?"
            raise InputError(f"bad configuration for {target}: {cause}") from None
        raise
