"""Rendering and building many messages without starving the send loop.

Rendering (Markdown above all) and MIME building cost about a millisecond a
message, all of it CPU: done in the event loop's process, they block the
sends (see bench/tick.py). A big batch is therefore built in a worker
process, a chunk at a time, while the daemon sends the chunks already built;
a small batch (the usual tick) is built in-process, which costs no start-up.

The worker is handed the parent's config and unsubscribe signer as values
(:class:`toma.mail.compose.Recipe`), so whichever process builds a message, it is
the same message, byte for byte but for its Message-ID.

What it saves is the event loop's time, shown by ``bench/tick.py``: a tick of
3,000 messages over 4 connections sends at 0.53 of the rate of a bare send
loop that builds nothing (median of 3 runs on a quiet 2-core machine), where
building in the loop's own process costs about a millisecond a message.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from toma.core.contacts import Contact
from toma.errors import TemplateError
from toma.mail.compose import Composer, Job, Recipe
from toma.mail.mime import Built

PARALLEL_FROM = 300  # messages in one tick before a worker process pays for itself
CHUNK = 100
LOCAL_CHUNKS = 1  # built in this process at least, and more while the worker starts
WORKER_NICENESS = 10


@dataclass(frozen=True)
class Failure:
    """A template error, as plain data (exceptions with keyword context do not pickle)."""

    message: str
    file: str | None
    line: int | None
    key: str | None

    def error(self, contact: str) -> TemplateError:
        return TemplateError(
            self.message, file=self.file, line=self.line, key=self.key, contact=contact
        )


BuildOutcome = tuple[Job, Built | Failure]
# Of a chunk about to be built, the jobs still to build (see build_chunks).
Keep = Callable[[list[Job]], Awaitable[list[Job]]]

_composer: Composer | None = None  # one per worker process, made by _start_worker


def _start_worker(recipe: Recipe) -> None:
    global _composer
    # Building is background work: the daemon's conversations with the SMTP and
    # IMAP servers wait on every round trip, so they come first on a busy machine.
    os.nice(WORKER_NICENESS)
    _composer = recipe.composer()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_end_with, args=(parent,), name="toma-builder-watch", daemon=True
        ).start()


def _end_with(parent: BaseProcess) -> None:
    """End this worker when the daemon that started it ends, however it ends.

    A pool worker waits on a queue whose writing end it holds itself, so a
    daemon killed outright (SIGKILL, the OOM killer) would leave it waiting
    for ever, and with it the fork server, whose liveness pipe it holds too.
    """
    parent.join()
    os._exit(0)


def _ready() -> None:
    """Nothing: answered once the worker has started."""


def _build_chunk(jobs: Sequence[Job]) -> list[Built | Failure]:
    assert _composer is not None  # noqa: S101 - set by the pool initializer
    # Only the messages travel back: the parent still holds the jobs.
    return [_build(_composer, job) for job in jobs]


def build_all(composer: Composer, jobs: Sequence[Job]) -> list[BuildOutcome]:
    return [(job, _build(composer, job)) for job in jobs]


def build_one(composer: Composer, job: Job) -> Built:
    """``job`` built as a send builds it (``toma preview``); a template error is raised."""
    [(_job, result)] = build_all(composer, [job])
    if isinstance(result, Failure):
        raise result.error(Contact.from_doc(job.contact).email)
    return result


def _build(composer: Composer, job: Job) -> Built | Failure:
    try:
        return composer.compose(
            job.template,
            Contact.from_doc(job.contact),
            now=job.now,
            extra=job.extra,
            in_reply_to=job.in_reply_to,
            references=job.references,
            unsubscribe="footer" if job.newsletter else job.unsubscribe,
            templates=composer.newsletters if job.newsletter else None,
            attachments=job.attachments,
        )
    except TemplateError as exc:
        return Failure(exc.message, exc.file, exc.line, exc.key)


async def _kept(jobs: list[Job], keep: Keep | None) -> list[Job]:
    return jobs if keep is None else await keep(jobs)


async def build_chunks(
    composer: Composer, jobs: Sequence[Job], keep: Keep | None = None
) -> AsyncGenerator[list[BuildOutcome], None]:
    """The outcomes of ``jobs``, in order, a chunk at a time.

    ``keep``, asked of each chunk right before it is built, leaves out the jobs
    no longer to send (another daemon's by then); a chunk left empty is not
    yielded. A :class:`toma.errors.TomaError` other than a template's (a message
    that needs unsubscribe links from a composer without the signer) ends the batch.
    """
    if len(jobs) < PARALLEL_FROM:
        for start in range(0, len(jobs), CHUNK):
            chunk = await _kept(list(jobs[start : start + CHUNK]), keep)
            if chunk:
                yield build_all(composer, chunk)
            await asyncio.sleep(0)  # let the sends of the previous chunk go on
        return
    context = multiprocessing.get_context("forkserver")
    # The fork server imports toma once; each tick's worker is forked from it ready,
    # instead of spending a quarter of a second of CPU on imports every time.
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=_start_worker, initargs=(composer.recipe(),)
    ) as pool:
        chunks = [list(jobs[start : start + CHUNK]) for start in range(0, len(jobs), CHUNK)]

        async def submit(index: int) -> asyncio.Future[list[Built | Failure]] | None:
            chunks[index] = await _kept(chunks[index], keep)
            if not chunks[index]:
                return None
            return asyncio.wrap_future(pool.submit(_build_chunk, chunks[index]))

        # The worker starts in a thread: the first submit forks it and waits (the
        # first time, while the fork server imports toma: most of a second on a
        # busy machine). Chunks are built here until it is ready, so that no send
        # waits for it; then two chunks queued ahead keep it busy.
        starting = asyncio.ensure_future(asyncio.to_thread(lambda: pool.submit(_ready).result()))
        index = 0
        try:
            while index < len(chunks) and (index < LOCAL_CHUNKS or not starting.done()):
                chunk = await _kept(chunks[index], keep)
                if chunk:
                    yield build_all(composer, chunk)
                index += 1
                await asyncio.sleep(0)
            if index < len(chunks):
                await starting  # a worker that failed to start ends the batch here
            futures = {
                ahead: await submit(ahead) for ahead in range(index, min(index + 2, len(chunks)))
            }
            for at in range(index, len(chunks)):
                if at + 2 < len(chunks):
                    futures[at + 2] = await submit(at + 2)
                building = futures.pop(at)
                if building is not None:
                    built = await building
                    yield list(zip(chunks[at], built, strict=True))
        finally:
            # Stopped early, the worker must have started before the pool can close; and
            # a start that failed unseen must not be left as an unretrieved error.
            await asyncio.gather(starting, return_exceptions=True)
