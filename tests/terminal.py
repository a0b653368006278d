"""A stream that says it is a terminal, for the tests of what a terminal is shown."""

import io


class Terminal(io.StringIO):
    def isatty(self):
        return True
