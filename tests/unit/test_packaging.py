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


def _fake_python(path: Path, minor: int) -> Path:
    """A stand-in interpreter of Python 3.<minor>: `-c` answers the version check the way a
    real one would, `-m venv DIR` makes DIR with itself and a pip that does nothing."""
    path.write_text(f"""#!/bin/sh
case "$1" in
  -V) echo "Python 3.{minor}.9";;
  -c) [ {minor} -ge 11 ];;
  -m) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" &&
      printf '#!/bin/sh\\n' > "$3/bin/pip" && chmod +x "$3/bin/pip";;
esac
""")
    path.chmod(0o755)
    return path


def _make_install(work: Path, python: Path):
    import subprocess
    for name in ("Makefile", "setup.cfg", "pyproject.toml"):
        (work / name).write_bytes((ROOT / name).read_bytes())
    return subprocess.run(["make", "--no-print-directory", "install", f"PYTHON={python}"],
                          cwd=work, capture_output=True, text=True, timeout=60)


def test_make_install_with_a_python_older_than_3_11_says_how_to_choose_another(tmp_path):
    """On a system whose python3 is 3.10 (Debian 11, Ubuntu 22.04), `make run` made .venv with
    it, and pip refused the project ('requires a different Python'); installing 3.11 did not
    help, since the Makefile kept any .venv/bin/python it found, and no message said how to
    give make another interpreter. Now make names the version needed and PYTHON=, and a
    .venv of a Python too old is made again with the one given."""
    import shutil
    if not shutil.which("make"):
        import pytest
        pytest.skip("no make")
    work = tmp_path / "checkout"
    work.mkdir()
    old = _fake_python(tmp_path / "python3.10", 10)
    result = _make_install(work, old)
    assert result.returncode != 0
    assert "Python 3.11 or later" in result.stderr and "PYTHON=" in result.stderr, result.stderr
    assert "Python 3.10.9" in result.stderr and not (work / ".venv").exists()

    (work / ".venv" / "bin").mkdir(parents=True)                 # a .venv made with 3.10
    shutil.copy(old, work / ".venv" / "bin" / "python")
    result = _make_install(work, _fake_python(tmp_path / "python3.12", 12))
    assert result.returncode == 0, result.stderr
    assert "3.12" in (work / ".venv" / "bin" / "python").read_text()
    assert (work / ".venv" / ".installed").exists()


def test_the_sdist_carries_the_schema_and_the_files_the_readme_starts_from(tmp_path):
    """The sdist held the Python packages only: not proto/sse.proto, the source of the
    committed rpc/sse_pb2*.py (scripts/gen-proto) and the schema the README names for clients
    in other languages, nor gunicorn.conf.py or .env.example. The wheel needs none of them:
    the command reads no config file, and grpcurl reads the schema by reflection."""
    import shutil
    import subprocess
    import sys
    import tarfile
    source = tmp_path / "source"
    for name in ("actors", "web", "rpc", "service", "proto"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
                 "gunicorn.conf.py", ".env.example"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_sdist(sys.argv[1])", str(tmp_path / "dist")],
                   cwd=source, check=True, capture_output=True, timeout=120)
    (sdist,) = (tmp_path / "dist").glob("kafka_sse_gateway-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    assert {"proto/sse.proto", "gunicorn.conf.py", ".env.example", "rpc/sse_pb2.py",
            "web/static/app.js"} <= names
    assert not any(name.startswith(("tests/", ".cache", ".venv")) for name in names)
