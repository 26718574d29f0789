from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database


async def get_database(request: Request) -> Database:
    """The app's database, built in its lifespan (tests override this dependency)."""
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


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
