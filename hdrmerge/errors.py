"""The error types hdrmerge raises, and the exit code each one maps to.

Exit codes (every cause is listed in docs/cli.md, "Exit codes"):

* 0: success.
* 1: any failure that is not the user's input: a download that failed, a
  checkpoint that fails its integrity check, a weights cache or output folder
  that takes no data (read-only, full disk), an I/O error while writing, too
  little memory to decode a shot.
* 2: bad usage or bad input: wrong number of files, unreadable or damaged
  image, a header declaring more pixels than the file holds or than
  ``--max-pixels``, implausible exposures, a checkpoint for the wrong
  architecture, an output that exists already, an output that is one of the
  inputs.
* 130: interrupted (Ctrl-C).

Every message is one line that says what is wrong and what to do about it; the
CLI prints it as ``error: <message>`` with no traceback unless ``--debug`` (or
``HDRMERGE_DEBUG=1``) is given.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class HdrmergeError(Exception):
    """Base class: a failure the user can act on, reported as one line."""

    exit_code: int = EXIT_FAILURE


class InputError(HdrmergeError):
    """The user's input (files, options) cannot be used as given."""

    exit_code = EXIT_USAGE


class WeightsError(HdrmergeError):
    """A checkpoint could not be found, fetched or verified."""

    exit_code = EXIT_FAILURE


class ArchitectureError(InputError):
    """A state dict does not fit the architecture it is loaded into."""


class OutputError(HdrmergeError):
    """An output file could not be written."""

    exit_code = EXIT_FAILURE
