"""Operations on a whole store: backup and restore, export, schema migrations.

They sit beside :mod:`toma.store` rather than in it: the store package is the
storage engine (tables, transactions, files), these are what an owner does
with all of it, across every table, from the command line.
"""
