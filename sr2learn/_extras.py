"""The optional dependencies: an ImportError that says which extra installs them."""


def missing_extra(user, error, extra="torch"):
    """The ImportError to raise (``from error``) when module ``user`` cannot import a
    dependency of ``extra``: it names the missing module and the pip command."""
    missing = getattr(error, "name", None) or "a dependency"
    return ImportError(
        f"{user} needs {missing}, which could not be imported ({error}). "
        f'It comes with the [{extra}] extra: pip install "sr2learn[{extra}]"',
        name=missing,
    )
