"""Request dependencies, as ``Annotated`` aliases endpoints declare."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from plexus.errors import PlexusError
from plexus.middleware import DEADLINE_EXPIRED
from plexus.runtime import Runtime

if TYPE_CHECKING:
    from collections.abc import Iterator


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed once when the handler returns normally.

    Runs with ``scope="function"``, so the commit happens before the response is sent and a
    failed commit is reported as an error instead of a success. A request that passed its
    deadline is rolled back: its client has already been told it failed.
    """
    session = get_runtime(request).sessions()
    try:
        yield session
        if request.scope.get(DEADLINE_EXPIRED):
            session.rollback()
        else:
            session.commit()
    except PlexusError as error:
        if error.keep_changes and not request.scope.get(DEADLINE_EXPIRED):
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
