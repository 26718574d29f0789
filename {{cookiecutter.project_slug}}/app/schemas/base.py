from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from app.core import field_sizes

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


def page_params(
    offset: Annotated[int, Query(ge=0, le=field_sizes.PAGE_OFFSET_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PageParams:
    return PageParams(offset=offset, limit=limit)
