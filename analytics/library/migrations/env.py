"""Alembic's environment for the library: migrations run on the connection the library hands
over (``config.attributes["connection"]``), so every URL SQLAlchemy accepts works."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
