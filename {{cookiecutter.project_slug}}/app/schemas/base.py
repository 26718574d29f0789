from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

ItemT = TypeVar("ItemT")


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Page(Schema, Generic[ItemT]):
    items: list[ItemT]
    total: int
    offset: int
    limit: int


class PageParams(Schema):
    offset: int
    limit: int
