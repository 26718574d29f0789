from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.migrations import SchemaCheck


async def get_database(request: Request) -> Database:
    """The app's database, built in its lifespan (tests override this dependency)."""
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_schema_check(request: Request) -> SchemaCheck:
    """The code's migrations and the database's last known state against them."""
    schema_check: SchemaCheck = request.app.state.schema_check
    return schema_check


SchemaCheckDep = Annotated[SchemaCheck, Depends(get_schema_check)]


async def get_session(database: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """One session per request, committed before the response is sent, rolled back on error."""
    async with database.session_factory() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit runs before the response goes out, so a client that acts on a
# response (a login followed at once by a refresh) always sees its effect.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(database: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """A session for requests that only read: it commits nothing and takes no write lock."""
    async with database.read_session_factory() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
