"""The ``hdrmerge`` command: one Typer app, one module per command.

:func:`main` is the console-script entry point. It turns every failure into one
line on stderr and an exit code (0 success, 1 failure, 2 bad usage or input,
130 interrupted), and with ``--json`` also into one JSON object on stdout;
full tracebacks only with ``--debug`` or ``HDRMERGE_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from typing import Annotated, Any

import click
import typer

from hdrmerge import __version__

from hdrmerge.cli import batch as batch_cmd
from hdrmerge.cli import calibrate as calibrate_cmd
from hdrmerge.cli import eval as eval_cmd
from hdrmerge.cli import finetune as finetune_cmd
from hdrmerge.cli import fuse as fuse_cmd
from hdrmerge.cli import synth as synth_cmd
from hdrmerge.cli import weights as weights_cmd
from hdrmerge.cli.common import DebugOpt, ReadmeCommand
from hdrmerge.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, HdrmergeError

app = typer.Typer(
    name="hdrmerge",
    help="Merge bracketed photos into ghost-free HDR images with the SAFNet network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("fuse", no_args_is_help=True, cls=ReadmeCommand)(fuse_cmd.fuse)
app.command("batch", no_args_is_help=True, cls=ReadmeCommand)(batch_cmd.batch)
app.command("eval", no_args_is_help=True, cls=ReadmeCommand)(eval_cmd.eval_)
app.command("synth", no_args_is_help=True, cls=ReadmeCommand)(synth_cmd.synth)
app.command("calibrate", no_args_is_help=True, cls=ReadmeCommand)(calibrate_cmd.calibrate)
app.command("finetune", no_args_is_help=True, cls=ReadmeCommand)(finetune_cmd.finetune)
app.add_typer(weights_cmd.app, name="weights")



def _version(value: bool) -> None:
    if value:
        typer.echo(f"hdrmerge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Merge bracketed photos into ghost-free HDR images with the SAFNet network."""


def _click_families(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click and, where Typer vendors its own copy, from that too."""
    found: list[type[BaseException]] = [getattr(click.exceptions, name)]
    if isinstance(public := getattr(typer, name, None), type):
        found.append(public)
    try:
        from typer._click import exceptions as vendored  # newer Typer ships click inside
    except ImportError:
        pass
    else:
        if isinstance(own := getattr(vendored, name, None), type):
            found.append(own)
    return tuple(dict.fromkeys(found))


_EXIT = _click_families("Exit")
_ABORT = _click_families("Abort")
_CLICK_ERROR = _click_families("ClickException")


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HDRMERGE_DEBUG", "").lower() in {"1", "true", "yes"}


#: Set by :func:`run` for a command line with ``--json``: every failure then
#: also prints ``{"error": ..., "exit_code": ...}`` on stdout, so that a script
#: never has to parse an empty stdout.
_json_errors = False


def _json_requested(argv: list[str]) -> bool:
    """``--json`` among the options (not after a ``--`` that ends them)."""
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def _error(message: str, code: int) -> int:
    # One line, whatever the message contains.
    line = " ".join(str(message).split())
    sys.stderr.write("error: " + line + "\n")
    sys.stderr.flush()
    if _json_errors:
        sys.stdout.write(json.dumps({"error": line, "exit_code": code}) + "\n")
        sys.stdout.flush()
    return code


class _Interrupted(BaseException):
    """Ctrl-C, raised past click, which would print a blank line and turn it into Abort."""


def _on_sigint(signum: int, frame: object) -> None:
    raise _Interrupted


#: The unraisable hook in place before :func:`run` installed :func:`_on_unraisable`.
_previous_unraisablehook = sys.unraisablehook


def _on_unraisable(unraisable: Any) -> None:
    """Deliver again a Ctrl-C that landed where Python cannot raise.

    An exception raised in a weakref callback or a ``__del__`` is reported as
    "unraisable" and the code goes on. importlib's module-lock cleanup is such
    a callback, and runs often while torch loads: a Ctrl-C landing there was
    lost, and the fuse ran on (CI caught it in test_ctrl_c). SIGINT is sent
    again from another thread, 50 ms later (``signal.raise_signal`` or ``os.kill`` from
    this one would run the handler at once, still inside the hook), so the
    handler runs in the main thread's own code, outside the callback.
    """
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, _Interrupted):
        # After 50 ms: by then this hook has returned (a thread started at once
        # can send it while start() still waits here).
        resend = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGINT))
        resend.daemon = True
        resend.start()
        return
    _previous_unraisablehook(unraisable)


def _interrupted(debug: bool) -> int:
    """The one line for Ctrl-C (exit 130); says truly what was written."""
    from hdrmerge.atomic import written

    if debug:
        traceback.print_exc()
    done = written()
    line = "interrupted after writing " + ", ".join(map(str, done)) if done else "interrupted; nothing written"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if _json_errors:
        sys.stdout.write(json.dumps({"error": line, "exit_code": EXIT_INTERRUPTED}) + "\n")
        sys.stdout.flush()
    return EXIT_INTERRUPTED


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    global _json_errors
    _json_errors = _json_requested(argv)
    if debug:
        # Modules deeper down (downloads) read this to keep library logs on.
        os.environ["HDRMERGE_DEBUG"] = "1"
    # Only where Python itself would raise KeyboardInterrupt: a shell that
    # starts us in the background with SIGINT ignored keeps it ignored.
    own_sigint = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    global _previous_unraisablehook
    if own_sigint:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        return _run(argv, debug)
    except (_Interrupted, KeyboardInterrupt):
        # Staged outputs were discarded on the way up (hdrmerge.atomic).
        return _interrupted(debug)
    finally:
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = _previous_unraisablehook


def _run(argv: list[str], debug: bool) -> int:
    try:
        result = app(args=argv, prog_name="hdrmerge", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except _EXIT as exc:
        return exc.exit_code
    except _ABORT:
        return _error("aborted", EXIT_INTERRUPTED)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A bare group or command: show its help, as click does, exit 2.
            sys.stderr.write(exc.format_message().rstrip() + "\n")
            return EXIT_USAGE
        ctx = getattr(exc, "ctx", None)
        where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        return _error(exc.format_message().rstrip(".") + where, exc.exit_code or EXIT_USAGE)
    except HdrmergeError as exc:
        if debug:
            traceback.print_exc()
        return _error(str(exc), exc.exit_code)
    except Exception as exc:  # last resort: still one line, traceback behind --debug
        if debug:
            traceback.print_exc()
        return _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILURE)


def main() -> None:
    """Console-script entry point."""
    code = run()
    if code == EXIT_INTERRUPTED:
        # Ctrl-C ends the process now. A normal exit first joins every
        # non-daemon thread (a shot still decoding, PyTorch still importing
        # in the background), which kept an interrupted run alive for minutes
        # on a loaded machine; the staged outputs are gone already and the
        # line has been printed, so nothing is left to do.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
