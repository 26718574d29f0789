from dataclasses import dataclass

from app.core.config import Settings
from app.core.db import Database
from app.services.email import EmailTemplates, Mailer


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use, built where the jobs run
    {%- if cookiecutter.use_redis %} (a worker's start-up)
    {%- else %} (the app's lifespan)
    {%- endif %}; a job
    declares `context: JobContext = TaskiqDepends()` to receive it.
    """

    settings: Settings
    database: Database
    mailer: Mailer
    templates: EmailTemplates
