"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""


class BertforgeError(Exception):
    """A problem the user can fix: bad input, bad setting, missing file."""


class ConfigError(BertforgeError):
    """A configuration value or key is not valid."""


class DataError(BertforgeError):
    """A corpus, tokenizer, shard folder or checkpoint cannot be used."""


class DivergedError(BertforgeError):
    """Training kept producing non-finite losses or gradients after every allowed rollback."""


def require(module: str, message: str):
    """Import an optional dependency (scikit-learn, pyarrow, matplotlib...), or raise DataError(message)
    saying which package to install: a missing extra is something the user can fix."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(message) from None
