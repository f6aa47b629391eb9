"""Alembic environment shared by every branch. Each branch (core, and one per plugin) keeps
its own version table (``alembic_version_<branch>``), so a deployment migrates exactly the
plugins it enables, and enabling or disabling one never disturbs another's history."""
from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=None,
                  version_table=config.attributes["version_table"], transactional_ddl=False)
with context.begin_transaction():
    context.run_migrations()
