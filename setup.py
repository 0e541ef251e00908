"""Maps the top-level folders onto the `penwright` namespace.

`server/`, `trainer/` and `rag/` install as `penwright.server`, `penwright.trainer`
and `penwright.rag` (never as bare top-level packages); subpackages are found here so
a new folder needs no edit to pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "penwright": "penwright",
    "penwright.server": "server",
    "penwright.trainer": "trainer",
    "penwright.rag": "rag",
}


def _packages() -> list[str]:
    found = []
    for name, folder in FOLDERS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(packages=_packages(), package_dir=FOLDERS)
