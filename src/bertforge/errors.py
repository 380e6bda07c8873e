"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""


class BertforgeError(Exception):
    """A problem the user can fix: bad input, bad setting, missing file."""


class ConfigError(BertforgeError):
    """A configuration value or key is not valid."""


class DataError(BertforgeError):
    """A corpus, tokenizer, shard folder or checkpoint cannot be used."""


class DivergedError(BertforgeError):
    """Training kept producing non-finite losses or gradients after every allowed rollback."""
