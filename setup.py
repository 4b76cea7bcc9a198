"""Package layout only (metadata is in pyproject.toml).

tracker/, reid/ and configs/ sit at the top of the repository, as the project's users asked,
but install inside the kprtrack namespace so that no generic top-level name is taken.
"""
from setuptools import find_packages, setup

MAPPED = ("tracker", "reid", "configs")
packages = find_packages(include=["kprtrack", "kprtrack.*"])
for top in MAPPED:
    packages += [f"kprtrack.{name}" for name in find_packages(include=[top, f"{top}.*"])]

setup(packages=packages, package_dir={"kprtrack": "kprtrack", **{f"kprtrack.{t}": t for t in MAPPED}})
