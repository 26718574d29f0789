"""Password reset through real processes: the PostgreSQL + Redis variant's API (uvicorn) and
its job workers (`taskiq worker app.worker:broker`), a private redis-server, and a real SMTP
server (aiosmtpd) run by this test.

Request -> the mail arrives -> confirm with its token -> the old password, refresh and access
tokens fail. A job queued while no worker runs is done once one starts; a worker killed
(SIGKILL) in the middle of a job leaves it to the next worker, and the job is done once in
effect: one mail, whose link works. The worker's liveness probe, as the Kubernetes manifest
runs it, follows its heartbeat.
"""

import asyncio
import email
import email.policy
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from helpers import HEARTBEAT_FILE, PYTHON, check, tool_env
from servers import RedisServer, free_port, mail_env, serve, tail, throwaway_database

pytestmark = pytest.mark.slow

VARIANT = {"database": "postgresql", "use_b2_storage": False, "use_redis": True}
PASSWORD = "the old password"
NEW_PASSWORD = "the new password"
TOKEN_IN_LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([A-Za-z0-9_-]+)")
WAIT_SECONDS = 30


class MailServer:
    """aiosmtpd on loopback, keeping the messages it accepts. `hold_next()` makes it stall the
    next session at MAIL FROM until `release()`: a worker sending then is in the middle of a job.
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._hold = threading.Event()
        self.holding = threading.Event()
        self._released = threading.Event()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "MailServer":
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._controller.stop()

    def hold_next(self) -> None:
        self._released.clear()
        self.holding.clear()
        self._hold.set()

    def release(self) -> None:
        self._released.set()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self._hold.is_set():
            self._hold.clear()
            self.holding.set()
            deadline = time.monotonic() + WAIT_SECONDS
            while not self._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]

    def wait_for(self, address: str) -> EmailMessage:
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.to(address):
            assert time.monotonic() < deadline, f"no mail to {address} in {WAIT_SECONDS} s"
            time.sleep(0.05)
        return self.to(address)[0]


@pytest.fixture(scope="module")
def project(render_once, tmp_path_factory) -> Iterator[tuple[Path, dict[str, str], MailServer]]:
    """The rendered variant migrated into a throwaway database, a private Redis and the mail
    server; yields the root, the environment of its processes, and the mail server.
    """
    root = render_once(**VARIANT)
    work = tmp_path_factory.mktemp("job-processes")
    redis = RedisServer(work)
    redis.start()
    try:
        with (
            MailServer() as mail,
            throwaway_database("postgresql", work, "tpl_jobs") as database_url,
        ):
            env = tool_env(
                DATABASE_URL=database_url,
                REDIS_URL=redis.url,
                REDIS_KEY_PREFIX=f"jobs-{secrets.token_hex(6)}",
                # Not prod: its floor on BCRYPT_ROUNDS would make these logins slow.
                CURRENT_ENVIRONMENT="staging",
                SECRET_KEY=secrets.token_urlsafe(64),
                BCRYPT_ROUNDS="4",
                LOG_LEVEL="INFO",
                RATE_LIMIT_SIGNUP="1000/minute",
                # A dead worker's job is taken over after 6 s, not 5 minutes: the shortest time
                # the settings allow for jobs that run up to 2 s, retried once after 0.5-1.5 s.
                JOB_REDELIVER_AFTER_SECONDS="6",
                JOB_TIMEOUT_SECONDS="2",
                JOB_MAX_ATTEMPTS="2",
                JOB_RETRY_DELAY_SECONDS="0.5",
                WORKER_HEARTBEAT_FILE=str(work / "worker-heartbeat"),
                **mail_env(mail.port),
            )
            check([PYTHON, "-m", "alembic", "upgrade", "head"], cwd=root, env=env, timeout=120)
            yield root, env, mail
    finally:
        redis.stop()


@contextmanager
def api(root: Path, env: dict[str, str], log: Path) -> Iterator[httpx.Client]:
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    base_url = f"http://127.0.0.1:{port}"
    with (
        serve([*cmd, "--no-access-log"], root, env, log, base_url),
        httpx.Client(base_url=f"{base_url}/api/v1", timeout=10) as client,
    ):
        yield client


class Worker:
    """A `taskiq worker` process group (its supervisor and the worker it runs), on the app's
    broker factory or another (`target`), with more options if need be.
    """

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        log: Path,
        target: str = "app.worker:broker",
        *options: str,
    ) -> None:
        self.heartbeat = Path(env["WORKER_HEARTBEAT_FILE"])
        self.heartbeat.unlink(missing_ok=True)
        self.log = log
        cmd = [PYTHON, "-m", "taskiq", "worker", target, "--workers", "1", *options]
        with log.open("w", encoding="utf-8") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--no-configure-logging", "--wait-tasks-timeout", "10"],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.heartbeat.exists():
            assert self.proc.poll() is None, f"the worker exited:\n{tail(log)}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{tail(log)}"
            time.sleep(0.05)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, within: float = 20) -> int:
        """SIGTERM, as Kubernetes stops a pod; the exit status, which must come `within` s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the worker did not stop:\n{tail(self.log)}") from None
        return self.proc.returncode


@contextmanager
def worker(
    root: Path, env: dict[str, str], log: Path, target: str = "app.worker:broker", *options: str
) -> Iterator[Worker]:
    running = Worker(root, env, log, target, *options)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.kill()


def signup(client: httpx.Client, username: str) -> str:
    address = f"{username}@example.com"
    body = {
        "username": username,
        "email": address,
        "first_name": "Rae",
        "last_name": "Set",
        "password": PASSWORD,
    }
    assert client.post("/auth/signup", json=body).status_code == 201
    return address


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/auth/login", data={"username": username, "password": password})


def request_reset(client: httpx.Client, address: str) -> httpx.Response:
    response = client.post("/auth/password-reset/request", json={"email": address})
    assert response.status_code == 202, response.text
    return response


def token_in(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None, message
    assert html is not None, message
    match = TOKEN_IN_LINK.search(str(text.get_content()))
    assert match, text.get_content()
    assert f'href="{match.group(0)}"' in str(html.get_content())
    return match.group(1)


def liveness_probe(root: Path, heartbeat: Path) -> list[str]:
    """The worker's liveness command from the Kubernetes manifest, on this heartbeat file."""
    manifest = root / "deploy" / "kubernetes" / "worker-deployment.yaml"
    container = yaml.safe_load(manifest.read_text("utf-8"))["spec"]["template"]["spec"]
    command = container["containers"][0]["livenessProbe"]["exec"]["command"]
    return [
        PYTHON if part == "python" else part.replace(HEARTBEAT_FILE, str(heartbeat))
        for part in command
    ]


def test_a_password_is_reset_through_the_api_and_a_worker(project, tmp_path):
    root, env, mail = project
    with (
        api(root, env, tmp_path / "api.log") as client,
        worker(root, env, tmp_path / "worker.log") as running,
    ):
        address = signup(client, "forgetful")
        old = login(client, "forgetful", PASSWORD).json()
        known = request_reset(client, address)
        unknown = request_reset(client, "nobody@example.com")
        assert known.json() == unknown.json()

        message = mail.wait_for(address)
        assert message["From"] == "Template Tests <tests@example.com>"
        assert message["Subject"] == "Reset your My Service password"
        token = token_in(message)
        confirm = {"token": token, "new_password": NEW_PASSWORD}
        assert client.post("/auth/password-reset/confirm", json=confirm).status_code == 204

        assert login(client, "forgetful", PASSWORD).status_code == 401
        assert login(client, "forgetful", NEW_PASSWORD).status_code == 200
        refresh = client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert refresh.status_code == 401
        me = client.get("/users/me", headers={"Authorization": f"Bearer {old['access_token']}"})
        assert me.status_code == 401
        reused = client.post("/auth/password-reset/confirm", json=confirm)
        assert reused.status_code == 400
        assert reused.json()["error_code"] == "RESET_TOKEN_USED"
        assert mail.to("nobody@example.com") == []

        # The liveness probe passes while the heartbeat is fresh, fails once it is stale (a
        # stuck event loop), and passes again when the running worker touches it.
        probe = liveness_probe(root, running.heartbeat)
        assert subprocess.run(probe, check=False).returncode == 0
        stale = time.time() - 120
        os.utime(running.heartbeat, (stale, stale))
        assert subprocess.run(probe, check=False).returncode == 1
        deadline = time.monotonic() + 10
        while subprocess.run(probe, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the worker's heartbeat stayed stale"
            time.sleep(0.5)

        assert running.stop() == 0, tail(tmp_path / "worker.log")
        assert not running.heartbeat.exists()


def test_a_job_outlives_a_missing_and_a_killed_worker(project, tmp_path):
    root, env, mail = project
    with api(root, env, tmp_path / "api.log") as client:
        address = signup(client, "patient")
        mail.hold_next()
        request_reset(client, address)  # no worker runs yet
        time.sleep(1)
        assert mail.to(address) == []

        # A worker starts and takes the job; it is killed while sending the mail.
        with worker(root, env, tmp_path / "first.log") as first:
            assert mail.holding.wait(WAIT_SECONDS), tail(tmp_path / "first.log")
            first.kill()
        mail.release()

        # The next worker takes the job over once it has been pending for 2 s.
        with worker(root, env, tmp_path / "second.log") as second:
            message = mail.wait_for(address)
            time.sleep(3)  # time enough for a second delivery, were there one
            assert len(mail.to(address)) == 1, [m["Subject"] for m in mail.to(address)]
            confirm = {"token": token_in(message), "new_password": NEW_PASSWORD}
            assert client.post("/auth/password-reset/confirm", json=confirm).status_code == 204
            assert login(client, "patient", NEW_PASSWORD).status_code == 200
            assert second.stop() == 0, tail(tmp_path / "second.log")
