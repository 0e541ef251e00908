"""A rehearsal of a device run on this machine: only the device image's packages can be imported.

Active when PW_DEVICE_SITE names a folder built by `python3 sitecustomize.py ALLOWED.txt FOLDER` (symlinks to
the files of the allowed distributions only; see `benchmarks/device/turnaround.sh local`): this interpreter's
site-packages leave sys.path and that folder takes their place, in every process that inherits the
environment (the daemon, its training children). Optional imports then take their fallback as they would
there, and a missing wheel fails here first. Each module that no finder found is appended to
PW_DEVICE_SITE/missing.txt.
"""

import os
import site
import sys


class LogMissing:
    """Last on sys.meta_path: sees only names every other finder missed; finds nothing itself."""

    def __init__(self, path: str):
        self.path = path

    def find_spec(self, name, path=None, target=None):
        if "." not in name:
            with open(self.path, "a") as fh:
                fh.write(name + "\n")
        return None


def _install() -> None:
    farm = os.environ.get("PW_DEVICE_SITE")
    if not farm:
        return
    real = set(site.getsitepackages())
    sys.path[:] = [p for p in sys.path if p not in real] + [farm]
    sys.meta_path.append(LogMissing(os.path.join(farm, "missing.txt")))


def build_site(allowed_file: str, dest: str) -> None:
    """Symlink every top-level entry (package, module, .libs, .dist-info) of each allowed distribution and of
    what it requires as installed here (this machine's versions may need more than the device's do)."""
    import importlib.metadata
    import re

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    dists = {norm(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    with open(allowed_file) as fh:
        todo = [norm(line.split("==")[0].strip()) for line in fh if line.strip() and not line.startswith("#")]
    allowed: set[str] = set()
    while todo:
        name = todo.pop()
        if name in allowed or name not in dists:
            continue
        allowed.add(name)
        for req in dists[name].requires or []:
            if "extra ==" not in req:
                todo.append(norm(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
    os.makedirs(dest, exist_ok=True)
    for name in allowed:
        dist = dists[name]
        for top in {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}:
            src, link = os.path.join(str(dist.locate_file("")), top), os.path.join(dest, top)
            if os.path.exists(src) and not os.path.lexists(link):
                os.symlink(src, link)


if __name__ == "__main__":
    build_site(sys.argv[1], sys.argv[2])
else:
    _install()
