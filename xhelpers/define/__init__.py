"""Ways to define experiments beyond a dict of callables: grids, commands, TOML files.

Defining experiments never imports a backend (checked by the architecture contracts).
"""
