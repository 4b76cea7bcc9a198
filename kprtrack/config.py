"""Hydra composition for every subcommand, from the configs shipped inside the package."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

from kprtrack.errors import InputError


def config_dir() -> Path:
    return Path(str(resources.files("kprtrack.configs")))


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
