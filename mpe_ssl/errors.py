"""User-facing errors: one line that names the file, key or value that is wrong."""


class MpeSslError(Exception):
    """An error caused by the user's input (a file, a config key, a value).

    The command-line entry point prints ``str(error)`` as a single line and exits with
    status 2 instead of showing a traceback.
    """
