"""Errors rex reports to a person as one clear line (the CLI prints `rex: <message>`, exits 1)."""


class RexError(Exception):
    """A failure with a message fit to show as is, without a traceback."""


class LedgerSourceError(RexError):
    """The ledger cannot be read: Spanner unreachable, database or stream missing, bad directory."""


class WarehouseError(RexError):
    """The warehouse cannot be opened or written."""
