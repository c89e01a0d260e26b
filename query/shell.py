"""`vmdex` with no command: crash's prompt, for what vmdex answers, on one dump.

    vmdex [--db ...] [--dump NAME] [--format F] [shell]

With a terminal on stdin it prompts `vmdex> ` (readline history in $VMDEX_HISTFILE or
~/.vmdex_history, tab completion of commands, vm options, and the dump's pids and
command names); otherwise it reads one command a line from stdin, prints only the
answers (as `crash -s < file` does) and exits with the highest status any command had.

It takes crash's words: `vm ...`, `foreach ... vm ...`, `set [pid | taskp | -c cpu | -p]`,
`help [command]`, `h` (history), `q` / `exit` (and crash's aliases `quit`, `for`, `man`,
`?`), `!cmd` or `|cmd` (a shell command), `cmd | shell-pipeline`, `cmd > file`,
`cmd >> file`, split as crash's setup_redirect (cmdline.c) splits a line. Every answer
is query.answer's, the one the CLI prints for the same words; only the index is opened
once, and it carries the `set` context. A failing command prints its message and the
prompt comes back.
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from vmdex.indexer.errors import VmdexError
from vmdex.query.answer import answer, check_format, failure
from vmdex.query.words import crash_words

PROMPT = "vmdex> "
HELP_DIR = Path(__file__).with_name("help")
# crash's built-in aliases (cmdline.c alias_init) for commands vmdex answers
ALIASES = {"man": "help", "?": "help", "quit": "q", "for": "foreach", "last": "ps -l"}
COMMANDS = ("vm", "foreach", "ps", "set", "sys", "help", "q", "exit")
# crash 9.0.2's other commands (its `help` list): known, but not answered from the index
CRASH_ONLY = frozenset((
    "*", "alias", "ascii", "bpf", "bt", "btop", "dev", "dis", "eval", "extend", "files",
    "fuser", "gdb", "ipcs", "irq", "kmem", "list", "log", "mach", "mod", "mount", "net",
    "p", "pte", "ptob", "ptov", "rd", "repeat", "runq", "rustfilt", "sbitmapq",
    "search", "sig", "struct", "swap", "sym", "task", "timer", "tree", "union",
    "vtop", "waitq", "whatis", "wr"))
VM_OPTIONS = ("-p", "-P", "-M", "-R", "-m", "-v", "-x", "-d", "-f")
FOREACH_WORDS = ("user", "kernel", "gleader", "active", "vm", "-p", "-m", "-v", "-R", "-x",
                 "-d", "RU", "IN", "UN", "ST", "TR", "ZO", "DE", "SW", "WA", "PA", "ID", "NE")


class LineError(Exception):
    """crash's setup_redirect refusing the line: its message, without the prefix."""


def split_redirect(line: str) -> tuple[str, str | None, str | None, bool]:
    """crash's setup_redirect(): (command, kind, target, append). kind is None, "pipe"
    (`cmd | sh-cmd`), "file" (`cmd > f`, `cmd >> f`), "run" (`!sh-cmd`, `|sh-cmd`) or
    "sh" (a line of just `!` or `|`). A `|`, `!` or `>` inside quotes or parentheses is
    not one, nor a `>` right after `-`; the first one found decides."""
    if line in ("|", "!"):
        return "", "sh", None, False
    run = line[:1] in ("|", "!")
    expression, quote = 0, ""
    for i, ch in enumerate(line):
        if ch == "(":
            expression += 1
        elif ch == ")":
            expression -= 1
        if ch == "'" and quote != '"':
            quote = "" if quote == "'" else "'"
        elif ch == '"' and quote != "'":
            quote = "" if quote == '"' else '"'
        if expression or quote:
            continue
        if ch in "|!":
            rest = line[i + 1:].lstrip(" \t")
            if not rest:
                raise LineError(f"no shell command after '{ch}'")
            if rest.endswith("|"):
                raise LineError("pipe to nowhere?")
            return line[:i], "run" if run else "pipe", rest, False
        if ch == ">" and not (i > 0 and line[i - 1] == "-"):
            append = line[i + 1:i + 2] == ">"
            rest = line[i + 1 + append:].lstrip(" \t")
            if not rest:
                raise LineError(f"no file name after {'>>' if append else '>'}")
            return line[:i], "file", rest, append
    return line, None, None, False


def _resolve_alias(line: str) -> str:
    first, _, rest = line.partition(" ")
    if first in ALIASES:
        return (ALIASES[first] + " " + rest.lstrip()).strip()
    return line


def run_help(open_index, argv: list[str], out, fmt: str = "text") -> int:
    """`help [command...]`: crash's own help text for vm, foreach, q and exit; set's as
    vmdex answers it."""
    if not argv:
        names = sorted(COMMANDS)
        out.write("\n" + "".join(f"{n:<15}" for n in names) + "\n\n"
                  "vmdex answers these from the index; crash's other commands are not "
                  "answered.\n"
                  "For help on any command above, enter \"help <command>\".\n\n")
        return 0
    failed = 0
    for name in argv:
        name = ALIASES.get(name, name)
        text = HELP_DIR / f"{name}.txt"
        if name.isidentifier() and text.is_file():
            out.write(text.read_text())
        else:
            out.write(f"No help data for \"{name}\" is available.\n")
            failed = 1
    return failed


def prompt_foreach(open_index, argv: list[str], out, fmt: str = "text") -> int:
    """foreach at the prompt: crash's words exactly (an unquoted regex is an unknown
    argument, as crash 9.0.2 says)."""
    from vmdex.query.foreach import run_foreach

    return run_foreach(open_index, argv, out, fmt, unquoted_regex=False)


class Shell:
    def __init__(self, idx, db: str | None, dump: str | None, fmt: str):
        from vmdex.query.context import run_set
        from vmdex.query.ps import run_ps
        from vmdex.query.sys import run_sys
        from vmdex.query.vm import run_vm

        self.idx, self.db, self.dump, self.fmt = idx, db, dump, fmt
        self.runners = {"vm": run_vm, "foreach": prompt_foreach, "ps": run_ps, "set": run_set,
                        "sys": run_sys, "help": run_help, "h": self.run_history,
                        "history": self.run_history}
        self.history: list[str] = []     # for `h` without readline
        self.at_prompt = False             # interactive: Ctrl-C stops only the command

    # --- one line ------------------------------------------------------------------
    def execute(self, line: str) -> int | None:
        """Answer one command line: its exit status, or None for `q`."""
        line = _resolve_alias(line.strip())
        if not line:
            return 0
        try:
            cmd, kind, target, append = split_redirect(line)
        except LineError as exc:
            sys.stderr.write(f"vmdex: {exc}\n")
            return 2
        if kind in ("sh", "run"):
            sys.stdout.flush()
            try:
                return subprocess.call(["/bin/sh"] if kind == "sh" else target,
                                       shell=kind == "run")
            except OSError as exc:
                sys.stderr.write(f"vmdex: cannot run the shell: {exc.strerror or exc}\n")
                return 2
        words = crash_words(cmd)
        if not words:
            return 0
        name = words[0]
        if name in ("q", "exit"):
            return None
        runner = self.runners.get(name)
        if runner is None:
            if name in CRASH_ONLY:
                sys.stderr.write(f"vmdex: {name}: a crash command vmdex does not answer "
                                 "(it answers vm, foreach ... vm, ps, set, sys, help)\n")
            else:
                sys.stderr.write(f"vmdex: command not found: {name}\n")
            return 2
        try:
            with self._output(kind, target, append) as stream:
                return answer(runner, words[1:], self.db, self.dump, self.fmt,
                              index=self.idx, stdout=stream)
        except LineError as exc:
            sys.stderr.write(f"vmdex: {exc}\n")
            return 2
        except BrokenPipeError:
            if kind != "pipe":
                raise
            return 0           # `| head`: the reader had enough
        except KeyboardInterrupt:
            if not self.at_prompt:
                raise                  # a script stops; main says "interrupted"
            sys.stdout.write("\n")    # at the prompt: only this command stops
            return 130
        except Exception as exc:
            if os.environ.get("VMDEX_DEBUG") and not isinstance(exc, VmdexError):
                raise
            msg, code = failure(exc)
            sys.stdout.flush()
            sys.stderr.write(msg)
            return code

    @contextmanager
    def _output(self, kind: str | None, target: str | None, append: bool):
        """Where the answer goes: None (stdout), a file, or a shell pipeline's stdin."""
        if kind is None:
            yield None
            return
        enc = {"encoding": sys.stdout.encoding or "utf-8",
               "errors": sys.stdout.errors or "strict"}
        if kind == "file":
            try:
                f = open(target, "a" if append else "w", **enc)
            except OSError:
                raise LineError(f"unable to open {target}") from None
            with f:
                yield f
            return
        sys.stdout.flush()
        try:
            proc = subprocess.Popen(target, shell=True, stdin=subprocess.PIPE, **enc)
        except OSError:
            raise LineError("cannot open pipe") from None
        try:
            yield proc.stdin
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            proc.wait()

    def run_history(self, open_index, argv: list[str], out, fmt: str = "text") -> int:
        """crash's `h`: the lines entered so far, numbered (cmdline.c dump_history)."""
        lines = self.history
        if self.at_prompt and "readline" in sys.modules:
            import readline

            n = readline.get_current_history_length()
            lines = [readline.get_history_item(i) for i in range(1, n + 1)]
        out.write("".join(f"[{i}] {h}\n" for i, h in enumerate(lines, 1)))
        return 0

    # --- the two ways in -------------------------------------------------------------
    def script(self, stream) -> int:
        """Commands from a pipe or file, one a line: the answers only, no prompt."""
        worst = 0
        for line in stream:
            self.history.append(line.strip())
            code = self.execute(line)
            sys.stdout.flush()
            if code is None:
                break
            worst = max(worst, code)
        return worst

    def interactive(self) -> int:
        import signal

        self.at_prompt = True
        # Ctrl-C at the prompt stops the command, even when vmdex was started with SIGINT
        # ignored (a background job of a script passes SIG_IGN on, and Python then installs
        # no handler of its own).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        histfile = _setup_readline(self.completions())
        try:
            while True:
                try:
                    line = input(PROMPT)
                except EOFError:
                    sys.stdout.write("\n")
                    break
                except KeyboardInterrupt:
                    sys.stdout.write("\n")
                    continue
                if self.execute(line) is None:
                    break
                sys.stdout.flush()
        finally:
            _save_history(histfile)
        return 0

    # --- completion ------------------------------------------------------------------
    def completions(self):
        """readline's completer: candidates from the dump's tasks, read once."""
        tasks = self.idx.tasks()
        pids = sorted({str(t.pid) for t in tasks}, key=int)
        comms = sorted({t.comm for t in tasks})
        topics = sorted(COMMANDS)

        def candidates(before: list[str], text: str) -> list[str]:
            if not before:
                return list(COMMANDS) + ["quit"]
            cmd = ALIASES.get(before[0], before[0])
            if cmd == "vm":
                return list(VM_OPTIONS) if text.startswith("-") else pids
            if cmd == "foreach":
                if "vm" in before:
                    return ["-p", "-m", "-v", "-R", "-x", "-d"]
                return pids + comms + list(FOREACH_WORDS)
            if cmd == "set":
                return ["-c", "-p"] if text.startswith("-") else pids
            if cmd == "help":
                return topics
            return []

        def complete(text: str, state: int):
            import readline

            try:
                before = readline.get_line_buffer()[:readline.get_begidx()].split()
                hits = [c for c in candidates(before, text) if c.startswith(text)]
                return hits[state] + " " if state < len(hits) else None
            except Exception:          # never let a completion error reach the prompt
                return None

        return complete


def history_file() -> str:
    return os.environ.get("VMDEX_HISTFILE") or os.path.expanduser("~/.vmdex_history")


def _setup_readline(completer) -> str | None:
    try:
        import readline
    except ImportError:
        return None
    path = history_file()
    try:
        readline.read_history_file(path)
    except (FileNotFoundError, PermissionError, OSError):
        pass
    readline.set_history_length(1000)
    readline.set_completer(completer)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    return path


def _save_history(path: str | None) -> None:
    if path is None:
        return
    import readline

    try:
        readline.write_history_file(path)
    except OSError as exc:
        sys.stderr.write(f"vmdex: cannot write the history file {path}: "
                         f"{exc.strerror or exc}\n")


def run_shell(db: str | None, dump: str | None, fmt: str) -> int:
    """The shell on the index's one dump (or --dump NAME); returns the exit status."""
    from vmdex.query.conn import connect
    from vmdex.query.index import DumpIndex

    check_format(fmt)
    conn = connect(db)
    try:
        shell = Shell(DumpIndex(conn, dump), db, dump, fmt)
        if sys.stdin.isatty():
            return shell.interactive()
        return shell.script(sys.stdin)
    finally:
        conn.close()
