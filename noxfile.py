"""Test, docs and packaging sessions for the VideoSys monorepo.

``nox`` runs the default sessions (the README's test command); ``nox -l`` lists them all.
Each package session gets its own virtualenv holding only that package's dependencies.

PyTorch: sessions install ``torch==2.13.0`` (a CPU build on the project's CI machines). On a GPU
machine set ``VIDEOSYS_TORCH_SPEC`` to the build you want, e.g.
``VIDEOSYS_TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" nox -s gpu``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ROOT / "packages"
TORCH_SPEC = shlex.split(os.environ.get("VIDEOSYS_TORCH_SPEC", "torch==2.13.0"))
PYTEST = ("pytest", "-q", "-m", "not gpu", "-p", "no:cacheprovider")

nox.options.sessions = ["lint", "core", "dsp", "pab", "models", "train", "docs", "build", "readme"]
nox.options.reuse_existing_virtualenvs = False


def pkg(name: str, extras: str = "") -> str:
    """The local path of ``videosys-<name>`` as a pip requirement, with optional extras."""
    path = PACKAGES / f"videosys-{name}"
    return f"{path}[{extras}]" if extras else str(path)


def install(session: nox.Session, *requirements: str) -> None:
    """Install the pinned torch first, then the requirements (so nothing pulls another torch)."""
    session.install(*TORCH_SPEC)
    session.install(*requirements)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package, the benchmarks and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "packages", "benchmarks", "examples", "noxfile.py", "docs/conf.py")


@nox.session
def core(session: nox.Session) -> None:
    """videosys-core alone."""
    install(session, pkg("core", "test"))
    session.run(*PYTEST, "packages/videosys-core/tests", *session.posargs)


@nox.session
def dsp(session: nox.Session) -> None:
    """videosys-dsp with core (no models), and pab for the checks that PAB over DSP equals PAB alone."""
    install(session, pkg("core", "test"), pkg("dsp", "test"), pkg("pab"))
    session.run(*PYTEST, "packages/videosys-dsp/tests", *session.posargs)


@nox.session
def pab(session: nox.Session) -> None:
    """videosys-pab with core only (no models, no dsp)."""
    install(session, pkg("core", "test"), pkg("pab", "test"))
    session.run(*PYTEST, "packages/videosys-pab/tests", *session.posargs)


@nox.session
def models(session: nox.Session) -> None:
    """videosys-models with its reference implementations (diffusers, transformers) and DSP/PAB."""
    install(session, pkg("core", "test"), pkg("dsp"), pkg("pab"), pkg("models", "test"))
    session.run(*PYTEST, "packages/videosys-models/tests", *session.posargs)


COLOSSALAI = "colossalai==0.5.0"


def install_colossalai(session: nox.Session) -> None:
    """ColossalAI without its dependencies (its ``torch<=2.5.1`` pin would replace ours): see the train README."""
    session.install("--no-deps", COLOSSALAI)


def readme_install_commands(readme: Path) -> list[list[str]]:
    """The commands of the README's install block (the ``bash`` block after ``## Install``), comments dropped."""
    text = readme.read_text()
    block = text.split("## Install", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


@nox.session
def train(session: nox.Session) -> None:
    """videosys-train on ColossalAI, installed by running its README's install commands as written.

    ColossalAI 0.5.0 declares ``torch<=2.5.1``: the README installs torch (ours, pinned first here), then
    ColossalAI with ``--no-deps``, then the VideoSys packages with the ``[colossalai]`` extra, which brings what
    ColossalAI imports at its pins (transformers 4.51.3, diffusers 0.29.0), under which videosys-models runs.
    """
    session.install(*TORCH_SPEC)
    for command in readme_install_commands(PACKAGES / "videosys-train" / "README.md"):
        session.run(*command)
    session.install("pytest>=7.4")
    session.run(*PYTEST, "packages/videosys-train/tests", *session.posargs)


@nox.session
def train_gpu(session: nox.Session) -> None:
    """videosys-train's GPU-only plugins (ZeRO, Gemini, FSDP) and precisions, and its throughput benchmark.

    Separate from ``gpu``: ColossalAI's pins (transformers 4.51.3, diffusers 0.29.0) replace the current ones.
    """
    if shutil.which("nvidia-smi") is None:
        session.skip("no CUDA GPU here (nvidia-smi not found): the train_gpu session runs only on CUDA machines")
    install(session, pkg("core"), pkg("dsp"), pkg("pab"), pkg("models"), pkg("train", "colossalai,test"))
    install_colossalai(session)
    session.run("pytest", "-q", "-m", "gpu", "packages/videosys-train/tests", *session.posargs)
    session.run("python", str(ROOT / "benchmarks" / "train_throughput.py"))


@nox.session
def docs(session: nox.Session) -> None:
    """Sphinx HTML docs with warnings as errors."""
    install(session, pkg("core", "io"), pkg("dsp"), pkg("pab"), pkg("models"), "sphinx>=7")
    session.install("--no-deps", pkg("train"))  # its API only: ColossalAI is mocked in docs/conf.py
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(ROOT / "docs" / "_build" / "html"))


@nox.session
def build(session: nox.Session) -> None:
    """Build every package's wheel, then install each alone into a fresh venv and import it there."""
    session.install("build>=1.0")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    names = sorted(p.name.removeprefix("videosys-") for p in PACKAGES.glob("videosys-*"))
    for name in names:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), pkg(name), silent=True)
    for name in names:
        venv = dist.parent / f"venv-{name}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", *TORCH_SPEC, external=True)
        session.run(python, "-m", "pip", "install", "-q", "--find-links", str(dist), f"videosys-{name}", external=True)
        session.run(python, "-c", f"import videosys.{name} as m; print(m.__name__, m.__version__)", external=True)
        installed = session.run(python, "-m", "pip", "list", "--format=freeze", external=True, silent=True)
        others = {n for n in names if n != name and f"videosys-{n}==" in installed}
        session.log(f"videosys-{name} pulled in: {sorted(others) or 'no other videosys package'}")


@nox.session
def gpu(session: nox.Session) -> None:
    """Tests marked ``gpu`` and the benchmarks, on a machine with a CUDA GPU; skips cleanly without one."""
    if shutil.which("nvidia-smi") is None:
        session.skip("no CUDA GPU here (nvidia-smi not found): the gpu session runs only on CUDA machines")
    install(session, pkg("core", "test"), pkg("dsp", "test"), pkg("pab", "test"), pkg("models", "test"))
    session.run("pytest", "-q", "-m", "gpu", "packages", *session.posargs)
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        session.run("python", str(script))


def readme_commands(path: Path) -> list[str]:
    """The install and check lines of a README's ``bash`` blocks (``pip install``, ``python -c``, ``videosys``)."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
        elif inside and line.startswith(("pip install ", "python -c ", "videosys --version", "videosys models")):
            lines.append(line)
    return lines


@nox.session
def readme(session: nox.Session) -> None:
    """Every install line of the top README and the models README, run as written, then the CLI they install."""
    for path in (ROOT / "README.md", PACKAGES / "videosys-models" / "README.md"):
        commands = readme_commands(path)
        if not any(line.startswith("pip install ") for line in commands):
            session.error(f"{path} shows no pip install line to check")
        for line in commands:
            session.run(*shlex.split(line, comments=True))


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main command: the embedded default model writes outputs/video.mp4 (no download, CPU)."""
    install(session, pkg("core", "io"), pkg("pab"), pkg("dsp"), pkg("models", "dsp"))
    prompt = session.posargs[0] if session.posargs else "a red circle moving right"
    session.run("videosys", "generate", "--prompt", prompt, "--out", "outputs/video.mp4")
