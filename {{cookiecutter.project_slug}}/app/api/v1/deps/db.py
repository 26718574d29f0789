from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import session_factory


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request, committed before the response is sent, rolled back on error."""
    async with session_factory() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit runs before the response goes out, so a client that acts on a
# response (a login followed at once by a refresh) always sees its effect.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
