"""``-h`` for commands with many options, readable in a narrow terminal.

typer lays options out as a table of six columns (name, short name, negative flag,
its short name, metavar, help); in fewer than ``WIDE`` columns the names and the
metavars leave the help text a sliver and cut long names short. There, each option
gets a line of its own with its help indented below it, in typer's panels (the
layout of man pages); in a wider terminal, typer's own table. Hand-written on rich
because typer has no such layout and no hook into its table's columns.
"""

from __future__ import annotations

from typing import Any

import click
import typer.core
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.text import Text

WIDE = 110  # columns from which typer's table leaves its help column room enough


def option_help(p: click.Parameter) -> tuple[Text, Text]:
    """(the option's spellings and metavar, its help with its default and environment variable)."""
    longest_first = sorted(p.opts, key=lambda o: (not o.startswith("--"), o))
    names = "/".join([", ".join(longest_first), *p.secondary_opts])
    head = Text(names, style="bold cyan")
    if p.metavar and not getattr(p, "is_flag", False):
        head.append(f" {p.metavar}", style="yellow")
    text = Text.from_markup(getattr(p, "help", None) or "")  # typer help is rich markup
    default = p.default
    if getattr(p, "show_default", False) and default not in (None, [], (), False, ""):
        text.append(f" [default: {default}]", style="dim")
    envvar = p.envvar if isinstance(p.envvar, str) else None
    if envvar:
        text.append(f" [env var: {envvar}]", style="dim yellow")
    return head, text


def narrow_help(cmd: click.Command, ctx: click.Context) -> RenderableType:
    usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
    parts: list[RenderableType] = [Text.assemble(" Usage: ", (usage, "bold"), "\n")]
    for para in (cmd.help or "").split("\n\n"):
        parts.append(Padding(Text(" ".join(para.split())), (0, 1, 1, 1)))
    panels: dict[str, list[RenderableType]] = {}
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        head, text = option_help(p)
        panel = getattr(p, "rich_help_panel", None) or "Options"
        panels.setdefault(panel, []).extend([head, Padding(text, (0, 0, 0, 4))])
    for title, rows in panels.items():
        parts.append(Panel(Group(*rows), title=title, title_align="left", border_style="dim"))
    return Group(*parts)


class CompactHelp(typer.core.TyperCommand):
    """A typer command whose help, in a narrow terminal, is :func:`narrow_help`."""

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        console = Console(highlight=False)
        if console.width >= WIDE:
            return super().format_help(ctx, formatter)
        console.print(narrow_help(self, ctx))
        return None
