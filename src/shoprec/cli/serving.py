"""Serving commands: serve, runs, publish, score."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from shoprec.cli.common import (
    ConfigOption,
    WorkspaceOption,
    app,
    console,
    errors,
    run,
    settings_for,
)
from shoprec.exceptions import DataError, ShoprecError


@app.command()
def serve(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1, loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Apply events in a thread of the server (default), or leave them to "
            "'shoprec consume'.",
        ),
    ] = None,
    bus: Annotated[str | None, typer.Option(help="Event bus URL (default memory://).")] = None,
    state: Annotated[str | None, typer.Option(help="Live state URL (default memory://).")] = None,
) -> None:
    """Serve the API and the storefront of the published run; a newly published run is
    picked up without a restart."""
    settings = settings_for(config, workspace)
    serving = settings.serving
    chosen_host = host or serving.host
    chosen_port = port if port is not None else serving.port
    chosen_workers = workers if workers is not None else serving.workers
    if not 1 <= chosen_port <= 65535:
        run(lambda: _fail(f"--port must be between 1 and 65535, not {chosen_port}"))
    if chosen_workers < 1:
        run(lambda: _fail(f"--workers must be at least 1, not {chosen_workers}"))
    shared = [
        url for url in (bus or serving.bus, state or serving.state) if url.startswith("memory:")
    ]
    if chosen_workers > 1 and shared:
        run(
            lambda: _fail(
                f"--workers {chosen_workers} needs a shared event bus and live state: "
                f"{shared[0]} lives in one process; use --bus redis://… --state redis://…"
            )
        )
    # A bad URL or an unreachable Redis: one line and exit code 2 here, not a traceback from
    # every worker process's start-up.
    run(lambda: _check_backends(bus or serving.bus, state or serving.state))
    run(lambda: _check_workspace(settings.workspace))
    run(lambda: check_port(chosen_host, chosen_port))
    import uvicorn

    from shoprec.serving.asgi import CONFIG_ENV

    # Every worker process builds the app from the same settings (file, workspace, overrides).
    for name, value in (("BUS", bus), ("STATE", state)):
        if value is not None:
            os.environ[f"SHOPREC_SERVING__{name}"] = value
    if worker is not None:
        os.environ["SHOPREC_SERVING__WORKER"] = "true" if worker else "false"
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    os.environ["SHOPREC_WORKSPACE"] = str(settings.workspace.resolve())
    console.print(
        f"serving {settings.workspace} on http://{chosen_host}:{chosen_port}/ "
        f"(API docs at /docs, storefront at /, {chosen_workers} worker(s))",
        soft_wrap=True,
    )
    # A container's stop is a normal end: uvicorn drains the requests in flight, restores this
    # handler and raises the signal it caught again, which then exits with status 0.
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        "shoprec.serving.asgi:app_from_environment",
        factory=True,
        host=chosen_host,
        port=chosen_port,
        workers=chosen_workers,
        access_log=access_log,
        log_level="info",
    )


def _stopped(signum: int, frame: object) -> None:
    sys.exit(0)


def _fail(message: str) -> None:
    raise ShoprecError(message)


def _check_workspace(workspace: Path) -> None:
    """A folder that holds a lake or runs; a server on anything else would create an empty
    workspace and serve nothing."""
    if not workspace.is_dir():
        raise ShoprecError(
            f"{workspace}: no such workspace; ingest data into it first ('shoprec ingest FILE "
            f"--workspace {workspace}') or try 'shoprec demo'"
        )
    if not ((workspace / "lake").is_dir() or (workspace / "models").is_dir()):
        raise ShoprecError(
            f"{workspace} is not a shoprec workspace (it has no lake/ or models/ folder); "
            "pass the folder you ingested into with --workspace"
        )


def check_port(host: str, port: int) -> None:
    """The address can be bound now: a port in use is one line with the way out, not a
    server that says it started and then prints [Errno 98]."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ShoprecError(f"--host {host}: not an address this machine knows ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ShoprecError(
                    f"port {port} on {host} is in use (another server?); choose another with --port"
                ) from None
            raise ShoprecError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _check_backends(bus_url: str, state_url: str) -> None:
    """The URLs parse, and a Redis bus or state answers (the bus creates its stream and
    consumer group as the server would); a ``memory://`` bus is left to the server, which
    takes its log folder."""
    from shoprec.stream.bus import open_bus
    from shoprec.stream.state import open_state

    open_bus(bus_url, folder=None).close()  # (memory://: only its URL is checked)
    state = open_state(state_url)
    try:
        state.applied_count()
    finally:
        state.close()


def _headline(metrics: dict[str, Any], model: str | None) -> str:
    values = metrics.get(model or "", {}) if isinstance(metrics, dict) else {}
    ndcg = next((v for k, v in values.items() if k.startswith("ndcg@")), None)
    return f"{ndcg:.4f}" if isinstance(ndcg, float) else "-"


@app.command()
def runs(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """List the workspace's model runs, newest first, with the published one marked."""
    settings = settings_for(config, workspace)
    from shoprec.pipeline.build import list_runs

    found = list_runs(settings.workspace)
    if not found:
        console.print(f"no runs in {settings.workspace / 'models'}; run 'shoprec build'")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("", "run", "created", "default model", "events", "users", "items", "ndcg"):
        table.add_column(column, no_wrap=True)
    for entry in found:
        table.add_row(
            "*" if entry["current"] else "",
            entry["run_id"],
            str(entry["created_at"])[:19],
            str(entry["default_model"]),
            f"{entry['events']:,}" if entry["events"] is not None else "-",
            f"{entry['users']:,}" if entry["users"] is not None else "-",
            f"{entry['items']:,}" if entry["items"] is not None else "-",
            _headline(entry["metrics"], entry["default_model"]),
        )
    console.print(table)
    console.print("* the published run; roll back with 'shoprec publish RUN'")


@app.command()
def publish(
    run_id: Annotated[str, typer.Argument(help="The run to publish (see 'shoprec runs').")],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Make a run the published one (a running server switches to it within a second)."""
    settings = settings_for(config, workspace)
    from shoprec.pipeline.build import publish as publish_run

    run(lambda: publish_run(settings.workspace, run_id))
    console.print(f"published run {run_id}")


@app.command()
def score(
    input: Annotated[
        Path,
        typer.Option(help="JSON Lines: one scoring request per line (the POST /score body)."),
    ],
    output: Annotated[Path, typer.Option(help="JSON Lines: one response per request line.")],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Pairwise scores in batch, as POST /score answers them, from the published run."""
    settings = settings_for(config, workspace)

    def body() -> int:
        from pydantic import ValidationError

        from shoprec.exceptions import describe_validation_error
        from shoprec.pipeline.build import current_run
        from shoprec.serving.asgi import configure_logging
        from shoprec.serving.engine import Engine
        from shoprec.serving.schemas import ScoreRequest
        from shoprec.serving.scoring import score_batch

        try:
            lines = input.read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise DataError(f"{input}: cannot read: {exc.strerror or exc}") from None
        configure_logging(settings.workspace, background=False)
        run_id, manifest = current_run(settings.workspace)
        engine = Engine(settings.workspace, run_id, manifest, settings=settings)
        failed = done = 0
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as out:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    request = ScoreRequest.model_validate_json(line)
                except ValidationError as exc:
                    failed += 1
                    message = f"{input}:{number}: {describe_validation_error(exc)}"
                    errors.print(f"[yellow]skipped:[/] {message}", highlight=False)
                    out.write(json.dumps({"line": number, "status": "error", "error": message}))
                    out.write("\n")
                    continue
                out.write(score_batch(engine, request).decode() + "\n")
                done += 1
        console.print(f"scored {done:,} request(s) with run {run_id} into {output}")
        return failed

    failed = run(body)
    if failed:
        errors.print(f"[bold red]error:[/] {failed} request line(s) of {input} were invalid")
        raise typer.Exit(code=2)


@app.command()
def consume(
    bus: Annotated[
        str | None, typer.Option(help="Event bus URL (default: serving.bus, memory://).")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="Live state URL (default: serving.state, memory://).")
    ] = None,
    consumer: Annotated[
        str | None, typer.Option(help="This worker's name in the consumer group.")
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            help="Stop when nothing is pending or waiting in the group (batch catch-up); "
            "events other live workers hold until their next lake write count as pending."
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Apply events from the bus to the live state and the lake, exactly once (the worker as
    its own process, beside 'shoprec serve --no-worker' replicas)."""
    settings = settings_for(config, workspace)

    def body() -> None:
        import signal
        import socket

        from shoprec.serving.asgi import configure_logging
        from shoprec.serving.registry import Registry
        from shoprec.stream.bus import open_bus
        from shoprec.stream.state import open_state
        from shoprec.stream.worker import Worker

        serving = settings.serving
        configure_logging(settings.workspace)
        opened_bus = open_bus(bus or serving.bus, folder=settings.workspace / "stream" / "bus")
        opened_state = open_state(state or serving.state, recent=serving.recent_events)
        registry = Registry(
            settings.workspace, poll_seconds=serving.reload_seconds, settings=settings
        )
        registry.start()
        worker = Worker.for_shop(
            settings,
            opened_bus,
            opened_state,
            lambda: registry.engine if registry.ready else None,
            consumer=consumer or f"worker-{socket.gethostname()}-{os.getpid()}",
        )
        console.print(
            f"consuming {bus or serving.bus} into {state or serving.state} as {worker.consumer}"
            + (" until idle" if until_idle else " (Ctrl-C stops)"),
            soft_wrap=True,
        )
        # a container's stop (SIGTERM) ends the loop as Ctrl-C does: what was applied is
        # written to the lake and acknowledged, not left for re-delivery
        previous = signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        try:
            stats = worker.run(until_idle=until_idle)
        except KeyboardInterrupt:
            worker.flush()
            stats = worker.stats
        finally:
            signal.signal(signal.SIGTERM, previous)
            registry.stop()
            opened_bus.close()
            opened_state.close()
        console.print(
            f"applied {stats.applied:,} events here, {stats.duplicates:,} were in the live state "
            "already (applied by the API when it accepted them, or delivered again), "
            f"{stats.dead_lettered:,} dead-lettered; {stats.lake_added:,} added to the lake"
        )

    run(body)
