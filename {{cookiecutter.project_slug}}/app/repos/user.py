import unicodedata
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from app.core.db import Database
from app.core.exceptions import ConflictError
from app.models.user import User
from app.repos.base import BaseRepository


class UserRepository(BaseRepository[User]):
    model = User

    async def get_by_login(self, login: str) -> User | None:
        """Find a user by username or email (both stored NFKC-normalised and lower-cased)."""
        login = unicodedata.normalize("NFKC", login).strip().lower()
        if "\x00" in login:
            {%- if cookiecutter.database == "postgresql" %}
            return None  # no username or email holds one, and PostgreSQL refuses it in a query
            {%- else %}
            return None  # no username or email holds one
            {%- endif %}
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

    async def other_active_superusers(self, user: User) -> int:
        {%- if cookiecutter.database == "postgresql" %}
        """How many active superusers there are besides `user`; their rows stay locked until
        the transaction ends, so two admins cannot demote each other at once.
        """
        query = (
            select(User.id)
            .where(User.is_superuser, User.is_active, User.id != user.id)
            .with_for_update()
        )
        {%- else %}
        """How many active superusers there are besides `user`. Two admins cannot demote each
        other at once: the read runs in a write transaction (BEGIN IMMEDIATE), one at a time.
        """
        query = select(User.id).where(User.is_superuser, User.is_active, User.id != user.id)
        {%- endif %}
        return len((await self.session.scalars(query)).all())

    async def list_page(self, *, offset: int, limit: int) -> tuple[Sequence[User], int]:
        query = select(User).order_by(User.created_at, User.id)
        return await self.page(query, offset=offset, limit=limit)


_users = User.__table__
_USER_BY_ID = select(_users).where(_users.c.id == bindparam("user_id"))


class UserReader:
    """Read-only lookups for the hot path, outside any session.

    Every authenticated request reads its user; a Core query on a bare connection costs a
    fraction of an ORM session with its transaction. The user comes back detached:
    `BaseRepository.update` attaches it to the session that writes it.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self.database.lookup(_USER_BY_ID, {"user_id": user_id})
        if row is None:
            return None
        user = User(**row)
        make_transient_to_detached(user)
        return user
