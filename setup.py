"""Package mapping for the one distribution, ``greenrt``.

The repository's top-level folders map onto one import namespace:

    greenrt/    -> greenrt
    protocols/  -> greenrt.protocols
    lab/        -> greenrt.lab

Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"greenrt": "greenrt", "greenrt.protocols": "protocols", "greenrt.lab": "lab"}


def _packages() -> list[str]:
    out = []
    for name, folder in ROOTS.items():
        out.append(name)
        # find_packages under each folder, excluding the nested roots mapped separately
        out += [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(set(out))


setup(package_dir=ROOTS, packages=_packages(), package_data={"greenrt": ["py.typed"]})
