from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from app.core.exceptions import ConflictError
from app.models.user import User
from app.repos.base import BaseRepository


class UserRepository(BaseRepository[User]):
    model = User

    async def get_by_login(self, login: str) -> User | None:
        """Find a user by username or email (both stored lower-cased)."""
        login = login.strip().lower()
        result = await self.session.scalars(
            select(User).where(or_(User.username == login, User.email == login))
        )
        return result.first()

    async def create(self, user: User) -> User:
        # No read-before-write: the unique indexes decide, which also holds when signups race.
        try:
            async with self.session.begin_nested():
                return await self.add(user)
        except IntegrityError as exc:
            raise ConflictError("A user with this email or username already exists") from exc

    async def update_fields(self, user: User, values: dict[str, Any]) -> User:
        try:
            async with self.session.begin_nested():
                return await self.update(user, values)
        except IntegrityError as exc:
            raise ConflictError("A user with this email or username already exists") from exc

    async def remove(self, user: User) -> None:
        try:
            async with self.session.begin_nested():
                await self.delete(user)
        except IntegrityError as exc:
            raise ConflictError("The user still owns data that must be deleted first") from exc

    async def list_page(self, *, offset: int, limit: int) -> tuple[Sequence[User], int]:
        query = select(User).order_by(User.created_at, User.id)
        return await self.page(query, offset=offset, limit=limit)
