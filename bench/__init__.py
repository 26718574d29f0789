"""`make bench` (`python -m bench`): render, serve and load the template's services next to two
references.

Every server runs as the rendered Dockerfile runs the service: its CMD (uvicorn with its flags)
and its ENV, no .env (the image has none), so the settings are at their defaults (prod, one JSON
log line per request) but for what the bench must set: a random SECRET_KEY, a fresh database,
and LOG_LEVEL as .env.example has it. The two references run on the same command and stack: the
ceiling (bench/ceiling_app.py, a bare FastAPI endpoint) and the limit app (bench/limit_app.py,
the least code that does /users/me's job: PyJWT, one SELECT through the driver). wrk loads them
over 127.0.0.1 only.

The scenario groups (BENCH_SCENARIOS) are the modules of bench/scenarios/, each described in its
own docstring and registered by name in bench/scenarios/__init__.py: base (the SQLite and
PostgreSQL variants against the references, a login storm, a soak), stacks (other server
stacks), scale (1 worker against N, a wrong-password storm, limits shared in Redis) and
addresses (a storm from 200,000 distinct client addresses). The rest of bench/: config (these
knobs), serving (stacks, servers, the Dockerfile's settings), load (wrk, its Lua scripts, RSS),
storms (what scale and addresses share), machine (versions, bcrypt's rate), pyspy
(BENCH_PROFILE), report (the printed tables and targets), results (bench/RESULTS.md) and
__main__ (the run). Serving, migrating and logging in go through the template's test helpers
(tests/helpers.py, tests/servers.py).

Prints one table and the performance targets, writes the same figures as JSON, and after a full
run (every group at least at the default lengths) writes bench/RESULTS.md.

Environment (all optional):
  BENCH_SCENARIOS=base,stacks,scale,addresses   which groups to run, e.g. BENCH_SCENARIOS=stacks
  BENCH_SECONDS=10       each measured wrk run
  BENCH_WARMUP=3         the warm-up before each load's first measured run
  BENCH_ROUNDS=2         alternating rounds of the loads compared in base and stacks (req/s
                         over all rounds, mean p50, worst p99), so that a change in the
                         machine's other load weighs on all alike
  SOAK_SECONDS=60        the mixed-traffic soak
  SOAK_RSS_INTERVAL=5    seconds between the soak's RSS samples
  BENCH_VARIANTS=sqlite,postgresql   the base group's variants
  BENCH_STACKS=uvloop==0.22.1,uvloop==0.23.0,asyncio,granian==2.8.9   the stacks group's stacks
  BENCH_SCALE_WORKERS=2  the worker count compared with one worker in the scale group, and
                         the workers of the addresses group
  BENCH_SCALE_ROUNDS=2   alternating rounds of /users/me on 1 worker and on N
  BENCH_REDIS_URL=redis://127.0.0.1:6379/0   the Redis of the scale group (loopback only)
  BENCH_OUT=build/bench.json
  BENCH_RESULTS=         write the Markdown results to this path, for any run (a full run
                         writes bench/RESULTS.md when this is unset)
  BENCH_WRK_THREADS=1     threads per wrk process: one drives far more than the server's rate
                         here, and the storm scenarios run two wrk processes at once on 2
                         cores shared with the server, where more threads only take its CPU
  TEMPLATE_PG_ADMIN_DSN=postgresql://postgres@127.0.0.1:5432/postgres   as for the tests
  BENCH_PROFILE=postgresql   variants to profile with py-spy during an extra /users/me run
  BENCH_STRICT=1         exit 1 when a target fails
"""

import sys
from pathlib import Path

# The template's test helpers are the one way to render, serve, migrate and log in.
TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
