"""The one exception type for problems the user can fix (bad input, arguments or config)."""


class UserError(Exception):
    """Bad input, arguments or config; the message names the file or key and the fix.

    Scripts print it without a traceback and exit with status 2.
    """
