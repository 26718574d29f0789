from typing import Annotated

from fastapi import Depends, Request

from app.jobs.broker import Jobs


async def get_jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(get_jobs)]
