"""Package layout only (metadata is in pyproject.toml).

tracker/, reid/ and configs/ sit at the top of the repository, as the project's users asked,
but install inside the kprtrack namespace so that no generic top-level name is taken. The install
is what maps them: a wheel copies them into kprtrack/, and an editable install (pip install -e .)
maps kprtrack.tracker -> tracker/ etc. with setuptools' import finder. A checkout that was never
installed does not import them (kprtrack/__init__.py does not extend its search path, so tests/,
benchmarks/ or setup.py never become kprtrack.* modules either).
"""
from setuptools import find_namespace_packages, setup

MAPPED = ("tracker", "reid", "configs")
# Namespace discovery so that config folders (YAML only, no __init__.py) are packaged too.
EXCLUDE = ["*.__pycache__", "*.egg-info"]
packages = find_namespace_packages(include=["kprtrack", "kprtrack.*"], exclude=EXCLUDE)
for top in MAPPED:
    packages += [f"kprtrack.{name}" for name in find_namespace_packages(include=[top, f"{top}.*"], exclude=EXCLUDE)]

setup(packages=packages, package_dir={"kprtrack": "kprtrack", **{f"kprtrack.{t}": t for t in MAPPED}})
