"""The ``steel`` command line, assembled above every layer (see :mod:`steel.cli`)."""
