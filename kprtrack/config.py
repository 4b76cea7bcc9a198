"""Hydra composition for every subcommand, from the configs shipped inside the package."""
from __future__ import annotations

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


def compose(config_name: str, overrides: Sequence[str] = ()):
    """Compose ``configs/<config_name>.yaml`` with command-line style ``key=value`` overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="kprtrack"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise InputError(f"bad configuration for '{config_name}': {err}".replace("\n", " ")) from None


def compose_command(config_name: str, argv: Sequence[str]):
    """Compose a subcommand's config; with ``--cfg`` among the args, print it and return None."""
    argv = list(argv)
    if "--cfg" not in argv:
        return compose(config_name, argv)
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(compose(config_name, [a for a in argv if a != "--cfg"])))
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
