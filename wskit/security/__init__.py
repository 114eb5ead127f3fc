"""Who a connection is (tokens) and what it may do.

Plain code over PyJWT: no event loop, no framework. tokens (keys, claims),
jwks (keys from an identity provider), identity (what a user id may be),
origins (which Origin and Host headers a server answers).
"""
