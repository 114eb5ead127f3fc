"""Start real servers from a notebook cell or a script (see :mod:`.serve`)."""
