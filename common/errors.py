"""The one exception type for mistakes in what the user gave us (files, rows, flags)."""


class UserError(Exception):
    """A problem with the user's input, reported as one line on stderr with exit code 2.

    The message must name what is wrong and where (a file, a CSV line, a flag), so the user
    can fix it without a traceback. Programming errors must not use this class: they keep
    their traceback.
    """
