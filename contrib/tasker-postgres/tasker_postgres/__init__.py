"""tasker-postgres: PostgreSQL store and queue for tasker, and ``tasker worker``.

Any number of worker processes on any number of machines share one database; none is special.
Each step outcome is settled in one transaction under its task's row lock, with the database as
the only source of truth (see README.md).
"""

__version__ = "0.1.0"
