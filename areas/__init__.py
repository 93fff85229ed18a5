"""The area tree (county → township → village → zone → speaker) and the units cases go to.

A foundation package: broadcast and hotline read the tree; only admins change it.
"""
