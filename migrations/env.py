"""Alembic environment: vmdex passes its own connection (see indexer/db.py)."""
from alembic import context

from vmdex.indexer.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: use the URL from the ini / -x db=...
    from sqlalchemy import create_engine
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
