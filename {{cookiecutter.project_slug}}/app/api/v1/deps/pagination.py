from typing import Annotated

from fastapi import Depends, Query

from app.core import field_sizes
from app.schemas.base import PageParams


async def page_params(
    offset: Annotated[int, Query(ge=0, le=field_sizes.PAGE_OFFSET_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PageParams:
    return PageParams(offset=offset, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]
