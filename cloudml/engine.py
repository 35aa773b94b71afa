"""Run the cloudml Pulumi program in-process under mocks and collect what it declared.

`run_program` configures Pulumi's mock runtime for one stack (project `cloudml`, the stack's config
and secret keys), runs `components.program.run` inside a stack resource exactly as `pulumi preview`
would, waits for every output to settle, and returns the recorded registrations and stack outputs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field

import pulumi
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_in_stack

from cloudml.mocks import CloudMocks, RecordingMonitor, Registration
from cloudml.stackfile import PROJECT, StackFile
from components import program as program_module
from components.errors import ConfigError


@dataclass
class ProgramRun:
    """What one run of the program declared."""

    registrations: list[Registration]
    outputs: dict  # deserialized; secrets still wrapped (see mocks.redact / mocks.unwrap)
    warnings: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class ProgramHung(RuntimeError):
    """The program did not settle under the mocks in time."""


def run_program(
    stack: StackFile,
    stack_references: dict[str, tuple[dict, list[str]]] | None = None,
    program: Callable[[], None] = program_module.run,
    project: str = PROJECT,
) -> ProgramRun:
    """Run the program for `stack` (or another program function: tests build single components
    this way, `cloudml plan --project` another project's program); raise ConfigError for bad
    config, anything else for bugs.

    A run that does not settle within the timeout (a future nothing completes) is abandoned and made
    once more: a run is pure — mocks, no side effects — and CI must never hang on one."""
    timeout = float(os.environ.get("CLOUDML_PLAN_TIMEOUT", "60"))
    try:
        return _run_once(stack, stack_references, program, project, timeout)
    except ProgramHung:
        logging.getLogger("cloudml.plan").warning("planning %s did not settle in %.0f s; planning it again", stack.name, timeout)
        return _run_once(stack, stack_references, program, project, timeout)


def _run_once(stack: StackFile, stack_references, program: Callable[[], None], project: str, timeout: float) -> ProgramRun:
    mocks = CloudMocks(stack=stack.name, region=str(stack.config.get("aws:region", "us-west-2")),
                       stack_references=stack_references or {})
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"cloudml.plan.{stack.name}")
    logger.propagate = False
    collect = _Collect()
    logger.handlers = [collect]
    # The loop must exist before set_mocks: the runtime binds the tasks it starts to the current loop.
    loop = asyncio.new_event_loop()
    # Our own executor, so the event loops Pulumi's mock monitor opens in its worker threads can be
    # closed when the run ends (left open, they fail noisily when garbage-collected later).
    executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="cloudml-plan")
    loop.set_default_executor(executor)
    # A failed apply leaves Output futures whose exception is re-raised below as one ConfigError;
    # asyncio would also print each of them as "never retrieved" noise.
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        asyncio.set_event_loop(loop)
        # set_mocks makes a root stack of its own when none is active, and run_in_stack below must
        # make the one that collects `pulumi.export`s: keep a placeholder root active meanwhile.
        placeholder = pulumi_settings.ROOT.set(object())  # type: ignore[arg-type]
        try:
            pulumi.runtime.set_mocks(mocks, project=project, stack=stack.name, preview=True, monitor=monitor, logger=logger)
        finally:
            pulumi_settings.ROOT.reset(placeholder)
        # The set of Output tasks Pulumi waits for before a run ends survives set_mocks (MockSettings
        # does not renew it). Tasks left from an earlier run belong to that run's closed loop, and
        # waiting on them fails ("Event loop is closed") or never ends: each run starts empty.
        pulumi_settings.SETTINGS.outputs = set()
        pulumi.runtime.set_all_config(stack.pulumi_config(), stack.secret_keys)
        try:
            loop.run_until_complete(asyncio.wait_for(run_in_stack(program), timeout))
        except asyncio.TimeoutError:
            raise ProgramHung(f"the program for stack {stack.name} did not settle within {timeout:.0f} s") from None
    except ProgramHung:
        raise
    except Exception as error:  # noqa: BLE001 - re-raised below, as the ConfigError it hides if any
        config_error = _find_config_error(error)
        if config_error is not None:
            raise config_error from None
        raise
    finally:
        pulumi_settings.SETTINGS.outputs = set()
        _close_worker_loops(executor)
        executor.shutdown(wait=True)
        asyncio.set_event_loop(None)
        loop.close()
    return ProgramRun(registrations=monitor.registrations, outputs=monitor.stack_outputs, warnings=collect.messages)


_WORKERS = 8


def _close_worker_loops(executor: ThreadPoolExecutor) -> None:
    """Run one task on every worker thread (a barrier keeps them apart) closing that thread's loop."""
    barrier = threading.Barrier(_WORKERS)

    def close_this_threads_loop() -> None:
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        try:
            thread_loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # this thread never made one
            return
        if not thread_loop.is_running() and not thread_loop.is_closed():
            thread_loop.close()
        asyncio.set_event_loop(None)

    for future in [executor.submit(close_this_threads_loop) for _ in range(_WORKERS)]:
        future.result()


def _find_config_error(error: BaseException) -> ConfigError | None:
    """A ConfigError raised inside an apply reaches us wrapped; find it in the chain."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
