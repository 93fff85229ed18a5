"""Accounts: users, roles, township scopes, password hashing and login throttling.

A foundation package like ``storage``: every domain may import the
``Principal`` it is handed, nothing here imports a domain.
"""
