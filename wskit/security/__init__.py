"""Who a connection is (tokens) and what it may do.

Plain code over PyJWT: no event loop, no framework.
"""
