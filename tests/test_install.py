"""vmdex installed the way users get it: an sdist and a wheel built from this tree, the wheel
installed into a fresh virtualenv outside the checkout, the README's main job run with that
vmdex, and what the install adds to site-packages checked."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    assert p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stdout[-3000:]}"
    return p


def _clean_env() -> dict[str, str]:
    """The user's environment: nothing of this checkout or this venv on the import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "VMDEX_DB")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(sys.executable).parent.as_posix() != p)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist (so the sdist
    must hold everything the wheel needs)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], env=_clean_env())
    wheel, = out.glob("vmdex-*.whl")
    sdist, = out.glob("vmdex-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel (and its dependencies) in it."""
    root = tmp_path_factory.mktemp("user") / "venv"
    env = _clean_env()
    _run([sys.executable, "-m", "venv", str(root)], env=env)
    _run([str(root / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
          str(built["wheel"])], env=env)
    return root


def _site_packages(venv: Path) -> Path:
    sp, = venv.glob("lib/python*/site-packages")
    return sp


def test_wheel_adds_one_import_name_and_the_script(venv):
    """Every file the vmdex distribution installed lies under `vmdex/` or its dist-info,
    except the console script."""
    sp = _site_packages(venv)
    record, = sp.glob("vmdex-*.dist-info/RECORD")
    tops = set()
    for line in record.read_text().splitlines():
        path = line.split(",")[0]
        if path.startswith("../"):
            assert path.endswith("/bin/vmdex"), path
            continue
        tops.add(path.split("/")[0])
    assert tops == {"vmdex", record.parent.name}, tops
    assert (venv / "bin" / "vmdex").is_file()
    for other in ("indexer", "query", "migrations", "tests"):
        assert not (sp / other).exists(), other


def test_packaged_modules_match_the_tree(built):
    """Every package folder of indexer/, query/ and migrations/ and every data file they
    read (help texts, Alembic's template) is in the wheel: pyproject.toml lists packages by
    hand, and a folder missing from that list installs a vmdex that cannot ingest."""
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    for top in ("indexer", "query", "migrations"):
        for f in (REPO / top).rglob("*"):
            if "__pycache__" in f.parts or f.is_dir():
                continue
            if f.suffix in (".py", ".txt", ".mako", ".ini"):
                rel = f.relative_to(REPO).as_posix()
                assert f"vmdex/{rel}" in names, f"{rel} is not in the wheel"
    assert not any(n.startswith("tests/") for n in names)


def test_optional_extras_stay_optional(venv):
    """The driver for PostgreSQL comes with vmdex[postgres] only."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("psycopg") for d in meta["dependencies"])
    assert "postgres" in meta["optional-dependencies"]
    p = subprocess.run([str(venv / "bin" / "python"), "-c", "import psycopg"],
                       capture_output=True, env=_clean_env())
    assert p.returncode != 0


def _readme_main_job() -> str:
    """The README's first command, less its set-up step: what a user runs once vmdex is
    installed."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).strip()
    assert block.startswith("./setup.sh && "), block
    return block[len("./setup.sh && "):]


def test_readme_main_job_with_the_installed_vmdex(venv, tmp_path):
    """The README's main job, run outside the checkout with the wheel's `vmdex`: it ingests
    a fixture dump into the default index (./vmdex.db) and answers `vm`, as in the tree."""
    if not (SHARED / "fixtures").is_dir():
        pytest.fail(f"{SHARED}/fixtures is missing: the README's main job reads it")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    job = _readme_main_job().replace(".venv/bin/vmdex", str(venv / "bin" / "vmdex"))
    p = _run(["bash", "-c", job], cwd=work, env=_clean_env())
    assert (work / "vmdex.db").is_file()
    pid = job.rsplit(" ", 1)[1]
    assert re.search(rf"^PID: {pid} +TASK: [0-9a-f]+ +CPU: \d+ +COMMAND: ", p.stdout, re.M), \
        p.stdout[-2000:]
    assert "ingested vmcore" in p.stdout
    # The same answer as the tree's own vmdex gives from that index.
    from tests.conftest import vmdex

    mine = vmdex("vm", pid, db=work / "vmdex.db", check=True).stdout.decode()
    assert mine in p.stdout


def test_sdist_holds_the_tree(built):
    import tarfile

    names = {n.split("/", 1)[1] for n in tarfile.open(built["sdist"]).getnames() if "/" in n}
    for must in ("pyproject.toml", "README.md", "indexer/arch/pagewalk.py",
                 "query/help/vm.txt", "migrations/script.py.mako"):
        assert must in names, must
