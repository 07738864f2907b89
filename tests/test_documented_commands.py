"""Every command the documentation shows exists as written: each ``ecgfoundry`` command line in
the README, the model card and the samples' README names real subcommands and options, and each
``benchmarks/`` script it runs exists and takes the flags shown. (The commands are not run: the
independent evaluation runs them on data these tests do not have.)"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import typer

from ecgfoundry.cli import NEXT_STEPS, app

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    REPO / "README.md",
    REPO / "src/ecgfoundry/weights/ecgfoundry-cpc/MODEL_CARD.md",
    REPO / "src/ecgfoundry/samples/README.md",
]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`((?:python |torchrun [^`]*?)?(?:ecgfoundry |benchmarks/)[^`]+)`")
ENVIRONMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def command_lines(text: str) -> list[str]:
    """Shell lines of the fenced blocks (continuations joined) and inline code spans that run
    ``ecgfoundry`` or a ``benchmarks/`` script."""
    lines = []
    for block in FENCE.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    lines += [match.replace("\n", " ") for match in INLINE.findall(text)]
    return lines


def words(line: str) -> list[str]:
    """The words of one shell line without comments, optional-part brackets, ``...``, leading
    environment assignments and launchers (``torchrun ... -m``, ``python``)."""
    line = line.strip().removeprefix("$ ")
    try:
        tokens = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
    except ValueError:  # an unbalanced quote in prose-like lines: not a command
        return []
    tokens = [t for t in tokens if t not in ("...", "\\")]
    while tokens and ENVIRONMENT.match(tokens[0]):
        tokens = tokens[1:]
    if tokens[:1] == ["torchrun"] and "-m" in tokens:
        tokens = tokens[tokens.index("-m") + 1 :]
    if tokens[:1] in (["python"], ["python3"]):
        tokens = tokens[1:]
    return tokens


def unknown_options(tokens: list[str], known: set[str]) -> list[str]:
    """The options among ``tokens`` (``--name`` or ``--name=value``) not in ``known``."""
    names = [token.split("=")[0] for token in tokens if token.startswith("-")]
    return [name for name in names if name not in known]


def check_ecgfoundry(tokens: list[str]) -> str | None:
    """None if ``tokens`` (after ``ecgfoundry``) name a real command and only its options."""
    command = typer.main.get_command(app)
    rest = list(tokens)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return f"no command {name!r} (has {sorted(command.commands)})"
        command = sub
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    unknown = unknown_options(rest, options)
    return f"{command.name} has no option {unknown}" if unknown else None


def script_flags(path: Path) -> set[str]:
    """The ``--flags`` a benchmark script's argparse parser declares (read from its source)."""
    flags = {"--help"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags |= {
                arg.value for arg in node.args
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")
            }  # fmt: skip
    return flags


def check_script(tokens: list[str]) -> str | None:
    path = REPO / tokens[0]
    if not path.is_file():
        return f"{tokens[0]} does not exist"
    if path.suffix != ".py":
        return None  # the shell wrappers pass their flags on to the scripts
    unknown = unknown_options(tokens[1:], script_flags(path))
    return f"{tokens[0]} has no option {unknown}" if unknown else None


def kind(tokens: list[str]) -> str | None:
    """``"ecgfoundry"``, ``"script"`` (a file under benchmarks/) or None (not checked)."""
    if tokens[:1] == ["ecgfoundry"]:
        return "ecgfoundry"
    if tokens and re.fullmatch(r"benchmarks/[\w/.-]+\.(py|sh)", tokens[0]):
        return "script"
    return None


def check(line: str) -> str | None:
    """None if the line is fine (or not a command this test checks), else the problem."""
    tokens = words(line)
    if kind(tokens) == "ecgfoundry":
        return check_ecgfoundry(tokens[1:])
    if kind(tokens) == "script":
        return check_script(tokens)
    return None


def documented() -> list[tuple[str, str]]:
    """(document, line) for every command line the documents show."""
    return [
        (path.relative_to(REPO).as_posix(), line)
        for path in DOCUMENTS
        for line in command_lines(path.read_text())
        if kind(words(line))
    ]


def test_the_documents_show_commands_of_each_kind() -> None:
    kinds = [kind(words(line)) for _, line in documented()]
    assert kinds.count("ecgfoundry") > 40 and kinds.count("script") > 10
    assert any(line.lstrip().startswith("torchrun") for _, line in documented())


@pytest.mark.parametrize("source,line", documented(), ids=lambda value: value[:60])
def test_a_documented_command_exists_as_written(source: str, line: str) -> None:
    assert check(line) is None, f"{source}: {line.strip()}\n  {check(line)}"


def test_the_demos_next_steps_exist_as_written() -> None:
    text = NEXT_STEPS.format(model="ecgfoundry-cpc", trained=235, adapted="runs/model")
    lines = text.splitlines()
    commands = [line.split("   ")[0] for line in lines if line.strip().startswith("ecgfoundry")]
    assert len(commands) == 4
    for line in commands:
        assert check(line) is None, f"{line}\n  {check(line)}"


@pytest.mark.parametrize(
    "line,problem",
    [
        ("ecgfoundry predict MODEL x.npy --fz 500", "predict has no option ['--fz']"),
        ("ecgfoundry data dowload ptbxl", "no command 'dowload'"),
        ("python benchmarks/ptbxl_table.py --sumary", "has no option ['--sumary']"),
        ("python benchmarks/no_such.py", "benchmarks/no_such.py does not exist"),
    ],
)
def test_the_check_catches_a_wrong_command(line: str, problem: str) -> None:
    assert problem in (check(line) or "")


def test_the_cli_help_names_every_strategy() -> None:
    from ecgfoundry.adapt import STRATEGIES
    from ecgfoundry.cli import STRATEGY_NAMES

    assert sorted(STRATEGY_NAMES) == sorted(STRATEGIES)


def test_the_cli_help_names_every_pretraining_objective_and_corpus_kind() -> None:
    from ecgfoundry.cli import CORPUS_KINDS, OBJECTIVE_NAMES
    from ecgfoundry.pretrain.api import OBJECTIVES
    from ecgfoundry.pretrain.corpus import KINDS

    assert OBJECTIVE_NAMES == OBJECTIVES and CORPUS_KINDS == KINDS
