"""Iterating a lazy query's items page by page: one place for the usage queries and the directory's, sync and async."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["AsyncPaged", "Paged"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Page(Protocol[T_co]):
    @property
    def data(self) -> Sequence[T_co]: ...


class Paged(ABC, Generic[T]):
    """Iterating gives every item of every page, in order; each iteration fetches again."""

    @abstractmethod
    def pages(self) -> Iterator[_Page[T]]:
        """Every page, in order."""

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data


class AsyncPaged(ABC, Generic[T]):
    """``async for`` gives every item of every page, in order; :meth:`_collect` gathers them into a list."""

    @abstractmethod
    def pages(self) -> AsyncIterator[_Page[T]]:
        """Every page, in order."""

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.data:
                yield item

    async def _collect(self) -> list[T]:
        return [item async for item in self]
