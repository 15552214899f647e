"""The one exception type for mistakes a user can fix (bad file, bad flag, no network)."""


class UserError(Exception):
    """Raised with a one-line message naming the file or flag and what to do about it.

    The CLI wrapper prints it as a single line and exits non-zero, with no traceback.
    """
