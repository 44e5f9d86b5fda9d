"""The README is tested: every command in its ```bash blocks must work as printed.

- ``python train.py|evaluate.py|infer.py …`` lines: the Hydra config composes with exactly those
  overrides (the first value of each sweep for ``-m`` lines);
- ``geoemb <tool> …`` / ``python -m geoemb.<tool> …`` lines: the tool's own argument parser accepts the
  arguments (nothing runs);
- ``make <target>`` lines: the target exists;
- output is never inside a ```bash block (it would be pasted and executed): bash blocks hold commands
  and comments only; outputs go in ```text blocks;
- slow tier: the synthetic-data commands marked ``# readme-run`` run for real, each with the quick
  overrides given after the marker.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ENTRY = {"train.py": "train", "evaluate.py": "eval", "infer.py": "infer"}
PYTHON = re.compile(r"^(?:\.venv/bin/)?python3?(?:\.\d+)?$")
#: commands a README may show that this test does not try (system tools, downloads)
EXTERNAL = {"pip", "git", "cd", "ls", "cat", "curl", "wget", "unzip", "tar", "apt-get", "sudo",
            "huggingface-cli", "hf", "gcloud", "geotessera", "source", "export", "gdalinfo", "qgis", "aws", "gsutil",
            "mkdir", "open", "xdg-open", "chromium", "rio", "ogr2ogr", "gdalbuildvrt"}  # fmt: skip


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, body)`` of every ```bash / ```sh code block."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(bash|sh|shell)\s*$", lines[i].strip())
        if m:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((start + 1, "\n".join(body)))
        i += 1
    return out


def commands(text: str) -> list[tuple[int, str, str]]:
    """``(line, command, trailing comment)`` of every command in the README's bash blocks."""
    cmds = []
    for start, body in bash_blocks(text):
        joined, first = "", None
        for n, raw in enumerate(body.splitlines()):
            line = raw.rstrip()
            if first is None:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                first = start + n
            if line.endswith("\\"):
                joined += line[:-1] + " "
                continue
            joined += line
            cmd, comment = _split_comment(joined.strip())
            cmds.append((first, cmd.removeprefix("$ ").strip(), comment))
            joined, first = "", None
    return cmds


def _split_comment(line: str) -> tuple[str, str]:
    """Split ``cmd  # comment`` at the first unquoted `` #``."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1 :].strip()
    return line.strip(), ""


#: a shell assignment line such as ``RUN=$(ls -d logs/train/water_seg/2*/ | tail -n 1)``
ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=\S")
#: README shell variables stand for paths; composing needs only a well-formed value
VAR = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")


def _argv(cmd: str) -> list[str]:
    argv = shlex.split(VAR.sub(r"/tmp/readme_\1", cmd))
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):  # VAR=value prefixes
        argv = argv[1:]
    return argv


def _hydra_overrides(args: list[str]) -> list[str]:
    """Overrides of a Hydra command line, first value of each sweep, no Hydra flags."""
    out, parser = [], OverridesParser.create()
    for a in args:
        if a in ("-m", "--multirun") or a.startswith("--"):
            continue
        ov = parser.parse_override(a)
        if ov.is_sweep_override():
            first = next(iter(ov.sweep_string_iterator()))
            a = f"{a.split('=', 1)[0]}={first}"
        out.append(a)
    return out


def _tool_parser(name: str):
    import importlib

    from geoemb.cli import TOOLS

    module = TOOLS[name].target.partition(":")[0]
    mod = importlib.import_module(module)
    if not hasattr(mod, "build_parser"):
        pytest.fail(f"geoemb {name}: {module} has no build_parser() to check README lines with")
    return mod.build_parser()


CMDS = commands(README.read_text()) if README.exists() else []


def test_readme_has_commands():
    assert len(CMDS) > 20


def test_bash_blocks_hold_only_commands():
    """Output lines (JSON, tables, paths) belong in ```text blocks, not in ```bash blocks."""
    bad = []
    for line, cmd, _ in CMDS:
        argv = _argv(cmd)
        head = argv[0] if argv else cmd
        if cmd.startswith(("{", "[", "|", "┃", "│")) or not re.match(r"^[\w./~$-]", head):
            bad.append(f"README.md:{line}: {cmd[:80]}")
    assert not bad, "output inside a bash block:\n" + "\n".join(bad)


@pytest.mark.parametrize("line,cmd,comment", CMDS, ids=[f"L{c[0]}" for c in CMDS])
def test_readme_command_is_valid(line, cmd, comment, tmp_path):
    if ASSIGN.match(cmd):  # a variable the next lines use: the run folders it globs must exist
        for task, exp in re.findall(r"logs/(train|evaluate)/([\w-]+)/", cmd):
            assert (ROOT / "conf" / "experiment" / f"{exp}.yaml").exists(), (
                f"README.md:{line}: no experiment {exp!r} writes logs/{task}/{exp}/"
            )
        return
    argv = _argv(cmd)
    head = argv[0]
    if head == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        for t in argv[1:]:
            if "=" not in t:
                assert t in targets, f"README.md:{line}: make target {t!r} not in the Makefile"
        return
    if PYTHON.match(head) and len(argv) > 1 and argv[1] in ENTRY:
        compose_cfg(ENTRY[argv[1]], _hydra_overrides(argv[2:]), tmp_path)
        return
    if PYTHON.match(head) and argv[1:2] == ["-m"] and argv[2].startswith("geoemb."):
        tool = argv[2].split(".")[1]
        _tool_parser(tool).parse_args(argv[3:])
        return
    if head in ("geoemb", ".venv/bin/geoemb"):
        if argv[1:] in ([], ["--help"]):
            return
        if argv[1] == "info":
            return
        _tool_parser(argv[1]).parse_args(argv[2:])
        return
    if head in ("bash", "sh") or head.startswith(("scripts/", "./", "benchmarks/")):
        script = argv[1] if head in ("bash", "sh") else head
        assert (ROOT / script).exists(), f"README.md:{line}: {script} does not exist"
        return
    if PYTHON.match(head) and len(argv) > 1 and argv[1].endswith(".py"):
        assert (ROOT / argv[1]).exists(), f"README.md:{line}: {argv[1]} does not exist"
        return
    if PYTHON.match(head) and argv[1:2] == ["-c"]:
        return  # inspection snippets; run in the slow tier when marked
    assert head in EXTERNAL, f"README.md:{line}: unknown kind of command {head!r}: {cmd}"


RUN = [(line, cmd, c) for line, cmd, c in CMDS if "readme-run" in c]


@pytest.mark.slow
@pytest.mark.parametrize("line,cmd,comment", RUN, ids=[f"L{c[0]}" for c in RUN])
def test_readme_synthetic_command_runs(line, cmd, comment, tmp_path):
    quick = shlex.split(comment.split("readme-run", 1)[1])
    argv = _argv(cmd)
    if PYTHON.match(argv[0]):
        argv[0] = sys.executable
    argv += quick + ([f"paths.log_dir={tmp_path}/logs", f"paths.data_dir={ROOT}/data"]
                     if any(a in ENTRY for a in argv[1:2]) else [])  # fmt: skip
    env = {"WANDB_MODE": "disabled", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**__import__("os").environ, **env})  # fmt: skip
    assert res.returncode == 0, (
        f"README.md:{line}: {cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    )
    for exp, check in NUMBER_CHECKS.items():
        if f"experiment={exp}" in argv:
            check(tmp_path / "logs", README.read_text())


def check_zonal_numbers(run_dir: Path, readme: str) -> None:
    """The README's zonal example numbers are what the stand-in run regenerates."""
    import pandas as pd

    r2 = pd.read_csv(next(run_dir.rglob("r2.csv"))).set_index("variable")
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \|$", readme, re.M)
    assert len(rows) >= 3, "README: the zonal R² table is missing"
    for var, full, pca in rows:
        got = (f"{r2.loc[var, 'r2_full']:.3f}", f"{r2.loc[var, 'r2_pca']:.3f}")
        assert got == (full, pca), f"README zonal R² {var}: README {full}/{pca}, run {got}"
    c = pd.read_csv(next(run_dir.rglob("classification.csv"))).set_index("task").loc["urban"]
    line = (
        f"urban vs rural: {100 * c.acc_full:.1f} % ± {100 * c.std_full:.1f} "
        f"(baseline {100 * c.baseline:.1f} %), PCA-10 {100 * c.acc_pca:.1f} % ± {100 * c.std_pca:.1f}."
    )
    assert line in readme, f"README zonal accuracy line differs from the run: {line}"


#: README numbers regenerated by a `# readme-run` command: experiment -> checker(run dir, README)
NUMBER_CHECKS = {"zonal_stats": check_zonal_numbers}
