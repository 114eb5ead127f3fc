"""Notebook widgets: what a learner watches instead of reads (see :mod:`.inspector`)."""
