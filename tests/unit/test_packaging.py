"""setup.cfg: the wheel ships every file the installed service serves."""
from pathlib import Path

from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).parents[2]


def test_every_folder_of_package_data_is_a_package_setuptools_finds():
    # A data folder that is not a package makes setuptools warn at every build ("Package
    # 'web.static' is absent from the `packages` configuration") and, per that warning, a
    # later setuptools leaves its files out of the wheel: the live page and /openapi.json.
    options = read_configuration(ROOT / "setup.cfg")["options"]
    packages = set(options["packages"])
    folders = {f"{package}.{pattern.rpartition('/')[0].replace('/', '.')}"
               for package, patterns in options["package_data"].items()
               for pattern in patterns if "/" in pattern}
    assert folders == {"web.static", "web.api"}
    assert folders <= packages, sorted(folders - packages)
    assert not any("__pycache__" in name for name in packages)
