"""The synthetic organisation: entities and activity, a pure function of the seed and the size.

Entities (projects, users, per-project API keys and vector stores, models of every kind) are drawn once from
``random.Random(seed)``. Activity is generated lazily and top-down: a leaf's *day* comes from the day's
factors (weekly pattern, growth, quiet days and weeks, noise), the day is split into hours by a diurnal curve in
the project's time zone, and an hour into minutes; each split moves the request count first and every other atom
in proportion to it (cumulative integer division), so the parts sum exactly to the whole and a quiet minute has no
tokens. Late revisions scale a recent hour towards its final value; a revised day is the sum of its revised hours.
Days are computed 32 at a time for every leaf with numpy (:mod:`usageledger.emulator.daily`, the same arithmetic
as the per-leaf rule) and kept; a leaf's shape is a :class:`~usageledger.emulator.daily.Shape`.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from usageledger import catalogue
from usageledger.emulator.activity import DAY, FAMILIES, HOUR, MINUTE, Family, LeafVectors, add_into, mix
from usageledger.emulator.config import EmulatorConfig
from usageledger.emulator.daily import Block, Bools, Ints, LeafRule, LeafTable, Shape, Tokens, blocks, np_mix, split
from usageledger.emulator.directory import Directory
from usageledger.emulator.directory_synthetic import retirements, synthetic_directory

__all__ = ["CHAT_MODELS", "OTHER_MODELS", "ModelSpec", "Organisation", "Project", "SyntheticSource"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model and its per-request shape: input/output tokens, cached/cache-write shares, modality shares."""

    name: str
    kind: str
    popularity: float
    tokens: Tokens = field(default_factory=Tokens)


CHAT_MODELS: Final[tuple[ModelSpec, ...]] = (
    ModelSpec("gpt-4o-mini-2024-07-18", "chat", 1.0, Tokens(1400, 350, 0.35, 0.05, 0.0, 0.04)),
    ModelSpec("gpt-4o-2024-08-06", "chat", 0.6, Tokens(2200, 480, 0.40, 0.06, 0.0, 0.08)),
    ModelSpec("o3-mini-2025-01-31", "chat", 0.35, Tokens(1800, 1500, 0.30, 0.04)),
    ModelSpec("gpt-4.1-2025-04-14", "chat", 0.4, Tokens(3000, 600, 0.45, 0.07, 0.0, 0.05)),
    ModelSpec("gpt-4.1-mini-2025-04-14", "chat", 0.5, Tokens(1600, 400, 0.35, 0.05)),
    ModelSpec("gpt-4o-audio-preview-2024-12-17", "chat", 0.12, Tokens(900, 700, 0.10, 0.02, 0.6, 0.0)),
    ModelSpec("o4-mini-2025-04-16", "chat", 0.3, Tokens(2000, 1600, 0.35, 0.05, 0.0, 0.06)),
    ModelSpec("gpt-4.1-nano-2025-04-14", "chat", 0.45, Tokens(800, 150, 0.25, 0.03)),
    ModelSpec("gpt-5-2025-08-07", "chat", 0.25, Tokens(2600, 1900, 0.50, 0.08, 0.0, 0.07)),
    ModelSpec("gpt-5-mini-2025-08-07", "chat", 0.35, Tokens(1500, 900, 0.45, 0.06)),
)
"""Chat models, most used first; ``EmulatorConfig.models`` takes the first N."""

OTHER_MODELS: Final[tuple[ModelSpec, ...]] = (
    ModelSpec("text-embedding-3-small", "embedding", 1.0, Tokens(700)),
    ModelSpec("text-embedding-3-large", "embedding", 0.3, Tokens(900)),
    ModelSpec("omni-moderation-latest", "moderation", 1.0, Tokens(300)),
    ModelSpec("gpt-image-1", "image", 1.0),
    ModelSpec("dall-e-3", "image", 0.5),
    ModelSpec("dall-e-2", "image", 0.2),
    ModelSpec("tts-1", "tts", 0.6, Tokens(650)),
    ModelSpec("gpt-4o-mini-tts", "tts", 1.0, Tokens(500)),
    ModelSpec("whisper-1", "stt", 0.7, Tokens(95)),
    ModelSpec("gpt-4o-transcribe", "stt", 1.0, Tokens(70)),
)

_TIERS: Final = (("default", 0.8), ("flex", 0.1), ("priority", 0.07), ("scale", 0.03))
_IMAGE_SIZES: Final = {
    "gpt-image-1": ("1024x1024", "1024x1792"),
    "dall-e-3": ("1024x1024", "1792x1792", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
_IMAGE_SOURCES: Final = {
    "gpt-image-1": ("image.generation", "image.edit"),
    "dall-e-3": ("image.generation",),
    "dall-e-2": ("image.generation", "image.edit", "image.variation"),
}
_ALNUM: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MADE_UP_LEAVES: Final = 6
"""Leaves per project of an endpoint that ``_build_leaves`` has no branch for (fewer where their fields repeat)."""
_MADE_UP_IDS: Final = 3
"""Made-up values per project of a string field that nothing else names (``session_id``: ``session_`` and 12 hex)."""
_PER_REQUEST_GUESS: Final = (("tokens", 800.0), ("characters", 500.0), ("seconds", 60.0), ("bytes", 1048576.0))
"""A made-up endpoint's second metric per request (or its level, for a gauge), by how the metric's name ends."""
_VARIANTS: Final = 16
_BLOCK_DAYS: Final = 32
"""Days of activity computed together (numpy, one pass per family): a 31-day page computes at most 64 days (64 or 128
with 64-day blocks; a day costs about the same in either)."""
_HOUR_DAYS: Final = 32
"""Days of numpy hours kept (every leaf's 24 hours of one family's day): up to about 300 KiB each."""


@dataclass(frozen=True, slots=True)
class Project:
    """A synthetic project: its ids, and what its leaves' volume and hours of the day depend on."""

    id: str
    index: int
    """Its place in ``Organisation.projects`` (a leaf rule names its project by it)."""
    weight: float
    """What its leaves' volume is multiplied by, ``1 / (index + 1) ** 0.8``: the first projects are the busiest."""
    utc_offset: int
    """Its users' hours from UTC: their working day (busiest about 14:00 local) shapes its leaves' hourly buckets."""
    users: tuple[str, ...]
    api_keys: tuple[str, ...]
    vector_stores: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Leaf:
    dims: tuple[object, ...]
    rule: LeafRule
    flat: bool


def _ident(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(_ALNUM) for _ in range(n))


def _cumulative(weights: Sequence[float]) -> tuple[int, ...]:
    out = [0]
    for w in weights:
        out.append(out[-1] + max(1, round(w * 1000)))
    return tuple(out)


class Organisation:
    """The entities of the synthetic organisation, drawn from the seed."""

    def __init__(self, config: EmulatorConfig) -> None:
        rng = random.Random(config.seed)
        self.config = config
        self.users: tuple[str, ...] = tuple(_ident(rng, "user-", 24) for _ in range(config.users))
        self.chat_models: tuple[ModelSpec, ...] = CHAT_MODELS[: min(config.models, len(CHAT_MODELS))]
        self.other_models: tuple[ModelSpec, ...] = OTHER_MODELS
        projects = []
        for i in range(config.projects):
            pid = _ident(rng, "proj_", 24)
            k = min(len(self.users), rng.randint(2, 5))
            users = tuple(sorted(rng.sample(self.users, k)))
            count = rng.randint(2, 3) if config.keys is None else config.keys
            keys = tuple(_ident(rng, "key_", 16) for _ in range(count))
            stores = tuple(_ident(rng, "vs_", 24) for _ in range(rng.randint(1, 3)))
            offset = rng.choice((-8, -7, -5, -4, 0, 1, 2, 5, 8, 9))
            projects.append(Project(pid, i, 1.0 / (i + 1) ** 0.8, offset, users, keys, stores))
        self.projects: tuple[Project, ...] = tuple(projects)
        self._rng = rng

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.chat_models + self.other_models)

    def model(self, name: str) -> ModelSpec | None:
        for m in self.chat_models + self.other_models:
            if m.name == name:
                return m
        return None


def _chat_shape(spec: ModelSpec, batch: bool) -> Shape:
    return Shape("chat", spec.tokens, scale=1.8 if batch else 1.0)


def _per_request_shape(metric: str, per_request: float) -> Shape:
    return Shape("per_request", metric=metric, per_request=per_request)


_COUNT: Final = Shape("count")


class SyntheticSource:
    """Activity of an :class:`Organisation`: lazy, deterministic, cached, with exact splits and optional revisions."""

    def __init__(self, config: EmulatorConfig, anchor: int, *, families: Mapping[str, Family] = FAMILIES) -> None:
        """``families``: the usage endpoints whose activity it makes, the catalogue's by default (a test adds a made-up
        one to show that an endpoint without a branch in ``_build_leaves`` still gets activity)."""
        self.config = config
        self.families = families
        self.org = Organisation(config)
        self.seed = config.seed
        self.day0 = anchor // DAY - config.days
        self._first = self.day0 * DAY
        self.retired = retirements(self.org, self.day0)
        self._leaves: dict[str, list[_Leaf]] = {}
        self._days: dict[tuple[str, int], LeafVectors] = {}
        self._blocks: dict[tuple[str, int], tuple[int, Block]] = {}  # (first day, block)
        self._latest = anchor // DAY  # the latest day asked of the source (or its start's): blocks end there
        self._tables: dict[str | None, tuple[list[tuple[Family, int, int]], LeafTable]] = {}
        self._hours: OrderedDict[tuple[str, int], list[LeafVectors]] = OrderedDict()
        self._minutes: OrderedDict[tuple[str, int], list[LeafVectors]] = OrderedDict()
        self._hour_arrays: OrderedDict[tuple[str, int], Block | None] = OrderedDict()
        self._hour_rows: dict[str, tuple[Ints, Ints, npt.NDArray[np.uint64]]] = {}
        self._diurnal_days: dict[tuple[str, int], Ints] = {}
        self._lock = threading.Lock()
        rng = random.Random(mix(config.seed, 7))
        self._hour_tables = {
            (offset, flat, v): _cumulative(self._diurnal(offset, flat, rng))
            for offset in {p.utc_offset for p in self.org.projects}
            for flat in (False, True)
            for v in range(_VARIANTS)
        }
        self._minute_tables = [
            _cumulative([(0.4 + 1.2 * rng.random()) * (4.0 if rng.random() < 0.05 else 1.0) for _ in range(60)])
            for _ in range(_VARIANTS)
        ]
        for name, family in families.items():
            self._leaves[name] = self._build_leaves(family, random.Random(mix(config.seed, 31, len(name))))

    @staticmethod
    def _diurnal(offset: int, flat: bool, rng: random.Random) -> list[float]:
        weights = []
        for h in range(24):
            local = (h + offset) % 24
            if flat:
                base = 1.0
            else:
                base = 0.04 + (max(0.0, 1 - abs(local - 14) / 8.0) ** 1.5) * (1.3 if 9 <= local <= 17 else 1.0)
            weights.append(base * (0.75 + 0.5 * rng.random()))
        return weights

    @property
    def first_time(self) -> int:
        return self._first

    def directory(self) -> Directory:
        """The organisation's directory, consistent with this activity (names every ID it holds)."""
        return synthetic_directory(self.org, self._first, self.retired)

    # --- leaves ------------------------------------------------------------------------------------------

    def leaves(self, family: Family) -> Sequence[tuple[object, ...]]:
        return [leaf.dims for leaf in self._leaves[family.name]]

    def _build_leaves(self, family: Family, rng: random.Random) -> list[_Leaf]:
        org = self.org
        name = family.name
        out: list[_Leaf] = []
        seen: set[tuple[object, ...]] = set()
        by_kind = {
            "embeddings": "embedding",
            "moderations": "moderation",
            "images": "image",
            "audio_speeches": "tts",
            "audio_transcriptions": "stt",
        }
        for project in org.projects:

            def add(
                values: dict[str, object],
                base: float,
                shape: Shape,
                project: Project = project,
            ) -> None:
                dims = tuple(values.get(d) for d in family.dims)
                if dims in seen:
                    return
                seen.add(dims)
                uid = mix(self.seed, 101, len(out), len(name), project.index)
                p_active = 0.55 + 0.45 * rng.random()
                flat = bool(values.get("batch"))
                until = self.retired.until(values.get("project_id"), values.get("api_key_id"))
                rule = LeafRule(uid, project.index, base * project.weight, p_active, shape, until)
                out.append(_Leaf(dims, rule, flat))

            def who(project: Project = project) -> dict[str, object]:
                return {
                    "project_id": project.id,
                    "user_id": rng.choice(project.users),
                    "api_key_id": rng.choice(project.api_keys),
                }

            if name in ("completions", "decisions"):
                models = org.chat_models if name == "completions" else org.chat_models[:3]
                count = 26 if name == "completions" else 8
                volume = 900.0 if name == "completions" else 120.0
                for _ in range(count):
                    spec = rng.choices(models, weights=[m.popularity for m in models])[0]
                    batch = rng.random() < 0.15
                    tier = rng.choices([t for t, _ in _TIERS], weights=[w for _, w in _TIERS])[0]
                    source = "agents_api" if rng.random() < 0.2 else "unlabeled"
                    values = who() | {"model": spec.name, "batch": batch, "service_tier": tier, "api_source": source}
                    add(values, volume * spec.popularity * (0.2 + rng.random()), _chat_shape(spec, batch))
            elif name in by_kind:
                specs = [m for m in org.other_models if m.kind == by_kind[name]]
                for _ in range(6):
                    spec = rng.choices(specs, weights=[m.popularity for m in specs])[0]
                    values = who() | {"model": spec.name}
                    if name == "images":
                        values |= {
                            "size": rng.choice(_IMAGE_SIZES[spec.name]),
                            "source": rng.choice(_IMAGE_SOURCES[spec.name]),
                        }
                        shape = _per_request_shape("images", 1.6)
                        volume = 25.0
                    else:
                        metric = family.atoms[1 - family.driver]
                        shape = _per_request_shape(metric, float(spec.tokens.input_per_request))
                        volume = {"embeddings": 700.0, "moderations": 400.0}.get(name, 60.0)
                    add(values, volume * spec.popularity * (0.3 + rng.random()), shape)
            elif name == "web_search_calls":
                for _ in range(5):
                    spec = rng.choice(org.chat_models)
                    values = who() | {
                        "model": spec.name,
                        "context_level": rng.choices(("low", "medium", "high"), weights=(3, 5, 2))[0],
                        "api_source": "agents_api" if rng.random() < 0.3 else "unlabeled",
                    }
                    add(values, 80.0 * (0.3 + rng.random()), _per_request_shape("num_requests", 1.4))
            elif name == "file_search_calls":
                for _ in range(5):
                    values = who() | {"vector_store_id": rng.choice(project.vector_stores)}
                    add(values, 150.0 * (0.3 + rng.random()), _COUNT)
            elif name == "code_interpreter_sessions":
                add({"project_id": project.id}, 30.0 * (0.3 + rng.random()), _COUNT)
            elif name == "vector_stores":
                size = len(project.vector_stores) * rng.randint(40, 900) * 1024 * 1024
                add({"project_id": project.id}, float(size), _COUNT)
            else:  # an endpoint without a branch here: every project's leaves from what the catalogue says of it
                return self._made_up_leaves(family)
        return out

    def _made_up_leaves(self, family: Family) -> list[_Leaf]:
        """The leaves of a usage endpoint that ``_build_leaves`` has no branch for, drawn from its catalogue record.

        Each project gets up to ``_MADE_UP_LEAVES`` leaves. A grouping field takes the project's own ids
        (``project_id``, ``user_id``, ``api_key_id``, ``vector_store_id``), a chat model (``model``, by popularity), a
        service tier, ``True`` or ``False`` (a ``bool`` column), one of its closed values (its filter's ``allowed``, or
        ``catalogue.GROUP_FIELD_VALUES``), or else one of a few made-up ids per project. The shape: the chat shape
        if the endpoint reports completions' token atoms, the requests alone if it has one atom (or is a level), else
        a per-request amount of its first atom that is not the driver. Its draws come from a generator seeded by its
        whole name, and its leaves' hashes mix that name in: nothing any other endpoint draws moves, and its activity
        is not another endpoint's that has a name as long."""
        org, endpoint = self.org, family.endpoint
        tag = mix(*family.name.encode())
        rng = random.Random(mix(self.seed, 37, tag))
        types = {c.name: c.type for c in endpoint.dimensions}
        closed = dict(catalogue.GROUP_FIELD_VALUES) | {f.field: f.allowed for f in endpoint.filters if f.allowed}
        chat_atoms = set(FAMILIES["completions"].atoms) - {"num_model_requests"}
        others = [a for i, a in enumerate(family.atoms) if i != family.driver]
        chat = bool(chat_atoms & set(others))
        amount = others[0] if others else family.atoms[0]  # the per-request metric, or a gauge's level
        guess = next((g for end, g in _PER_REQUEST_GUESS if amount.endswith(end)), 2.0)
        weights = [m.popularity for m in org.chat_models]
        out: list[_Leaf] = []
        seen: set[tuple[object, ...]] = set()
        for project in org.projects:
            own: dict[str, Sequence[str]] = {
                "user_id": project.users,
                "api_key_id": project.api_keys,
                "vector_store_id": project.vector_stores,
            }
            for _ in range(_MADE_UP_LEAVES):
                values: dict[str, object] = {}
                spec = org.chat_models[0]
                for dim in family.dims:
                    if dim == "project_id":
                        values[dim] = project.id
                    elif dim in own:
                        values[dim] = rng.choice(own[dim])
                    elif dim == "model":
                        spec = rng.choices(org.chat_models, weights=weights)[0]
                        values[dim] = spec.name
                    elif dim == "service_tier":
                        values[dim] = rng.choices([t for t, _ in _TIERS], weights=[w for _, w in _TIERS])[0]
                    elif types[dim] == "bool":
                        values[dim] = rng.random() < 0.15
                    elif closed.get(dim):
                        values[dim] = rng.choice(closed[dim])
                    else:
                        stem = dim.removesuffix("_id")
                        hashes = [mix(self.seed, 41, tag, *dim.encode(), project.index, k) for k in range(_MADE_UP_IDS)]
                        values[dim] = f"{stem}_{rng.choice(hashes) % 16**12:012x}"
                dims = tuple(values[d] for d in family.dims)
                base = (guess * 1000.0 if family.gauge else 100.0) * (0.3 + rng.random())
                p_active = 0.55 + 0.45 * rng.random()
                if dims in seen:
                    continue
                seen.add(dims)
                if family.gauge or not others:
                    shape = _COUNT
                elif chat:
                    shape = _chat_shape(spec, bool(values.get("batch")))
                else:
                    shape = _per_request_shape(amount, guess)
                uid = mix(self.seed, 103, tag, len(out), project.index)
                until = self.retired.until(values.get("project_id"), values.get("api_key_id"))
                rule = LeafRule(uid, project.index, base * project.weight, p_active, shape, until)
                out.append(_Leaf(dims, rule, bool(values.get("batch"))))
        return out

    # --- days ----------------------------------------------------------------------------------------------

    def _block(self, family: Family, day: int, *, together: bool = False, today: int = 0) -> tuple[int, Block]:
        """The final activity of every leaf on days of the ``_BLOCK_DAYS``-day block holding ``day``, computed once,
        as ``(first, (values, present))``: the arrays' rows are the days from ``first`` on.

        A block is computed from the first day asked of it (the whole block once a day before that is asked) up
        to the latest day asked of the source so far, or ``today`` (the caller's clock) if later. A day's values
        do not depend on the days computed with it, so a page of days computes its own days (not the block's
        earlier ones, nor days that have not begun), and a block asked outside its days is computed again, wider.

        ``together``: compute every endpoint's block in one numpy pass (what costs need), not this one's alone.
        """
        index = day // _BLOCK_DAYS
        hit = self._blocks.get((family.name, index))
        if hit is not None and hit[0] <= day < hit[0] + len(hit[1][0]):
            return hit
        with self._lock:
            self._latest = last = max(self._latest, day, today)
        parts, table = self._table(None if together else family)
        first = day if hit is None else index * _BLOCK_DAYS
        days = np.arange(first, min((index + 1) * _BLOCK_DAYS, last + 1), dtype=np.int64)
        made = blocks(parts, table, days, seed=self.seed, day0=self.day0, history=self.config.days)
        with self._lock:
            for (fam, _, _), got in zip(parts, made, strict=True):
                kept = self._blocks.get((fam.name, index))
                if kept is None or (first <= kept[0] and len(got[0]) - (kept[0] - first) >= len(kept[1][0])):
                    self._blocks[(fam.name, index)] = (first, got)  # (kept otherwise: it holds days this lacks)
            return self._blocks[(family.name, index)]

    def _day_rows(self, family: Family, day: int, today: int = 0) -> Block:
        """The final ``(values[leaf, atom], present[leaf])`` of every leaf on Unix day number ``day``."""
        first, (values, present) = self._block(family, day, today=today)
        return values[day - first], present[day - first]

    def _table(self, family: Family | None) -> tuple[list[tuple[Family, int, int]], LeafTable]:
        """The leaves of ``family`` (``None``: of every family) as one table, and each family's columns in it."""
        key = None if family is None else family.name
        hit = self._tables.get(key)
        if hit is None:
            parts: list[tuple[Family, int, int]] = []
            rules: list[LeafRule] = []
            # every family together: the chat families first, so the chat shape runs over their span alone
            together = sorted(self.families.values(), key=lambda f: self._kind(f) != "chat")
            for fam in together if family is None else (family,):
                leaves = self._leaves[fam.name]
                parts.append((fam, len(rules), len(rules) + len(leaves)))
                rules.extend(x.rule for x in leaves)
            hit = self._tables[key] = (parts, LeafTable.of(rules))
        return hit

    def _kind(self, family: Family) -> str:
        leaves = self._leaves[family.name]
        return leaves[0].rule.shape.kind if leaves else "count"

    def day_block(
        self, family: Family, start: int, now: int, *, together: bool = False
    ) -> tuple[int, int, Ints, Bools] | None:
        """The block holding the day at ``start``: (block number, the day's row in the arrays, values, present)."""
        if not family.gauge and self._revising(start + DAY, now):
            return None
        day = start // DAY
        first, (values, present) = self._block(family, day, together=together, today=now // DAY)
        return day // _BLOCK_DAYS, day - first, values, present

    def day_arrays(self, family: Family, start: int, now: int) -> tuple[Ints, Bools] | None:
        """The day starting at ``start`` as ``(values[leaf, atom], present[leaf])``; ``None`` while it is revised."""
        if not family.gauge and self._revising(start + DAY, now):
            return None
        return self._day_rows(family, start // DAY, now // DAY)

    def _day_final(self, family: Family, start: int) -> LeafVectors:
        key = (family.name, start)
        cached = self._days.get(key)
        if cached is not None:
            return cached
        values, present = self._day_rows(family, start // DAY)
        leaves = np.flatnonzero(present)
        rows = values[leaves].tolist()
        out: LeafVectors = dict(zip(leaves.tolist(), map(tuple, rows), strict=True))
        self._days[key] = out
        return out

    # --- splits --------------------------------------------------------------------------------------------

    @staticmethod
    def _split(vec: tuple[int, ...], driver: int, cum: tuple[int, ...]) -> list[tuple[int, ...] | None]:
        """Split a vector into ``len(cum) - 1`` parts that sum to it exactly, the driver first."""
        total = cum[-1]
        r = vec[driver]
        n = len(cum) - 1
        if r == 0:
            return [vec] + [None] * (n - 1)
        bounds = [r * c // total for c in cum]
        parts: list[tuple[int, ...] | None] = []
        for k in range(n):
            lo, hi = bounds[k], bounds[k + 1]
            if lo == hi:
                parts.append(None)
            else:
                parts.append(tuple(c * hi // r - c * lo // r for c in vec))
        return parts

    def _split_all(
        self, family: Family, vectors: LeafVectors, table: Callable[[_Leaf], tuple[int, ...]], n: int
    ) -> list[LeafVectors]:
        leaves = self._leaves[family.name]
        out: list[LeafVectors] = [{} for _ in range(n)]
        for i, vec in vectors.items():
            if family.gauge:
                for part in out:
                    part[i] = vec
                continue
            for k, part_vec in enumerate(self._split(vec, family.driver, table(leaves[i]))):
                if part_vec is not None:
                    out[k][i] = part_vec
        return out

    def _hours_final(self, family: Family, day_start: int) -> list[LeafVectors]:
        key = (family.name, day_start)
        with self._lock:
            hit = self._hours.get(key)
            if hit is not None:
                self._hours.move_to_end(key)
                return hit
        projects = self.org.projects
        day = day_start // DAY
        hours = self._split_all(
            family,
            self._day_final(family, day_start),
            lambda leaf: self._hour_tables[
                (projects[leaf.rule.project].utc_offset, leaf.flat, mix(leaf.rule.uid, day) % _VARIANTS)
            ],
            24,
        )
        with self._lock:
            self._hours[key] = hours
            if len(self._hours) > 256:
                self._hours.popitem(last=False)
        return hours

    def hour_block(self, family: Family, start: int, now: int) -> tuple[int, Ints, Bools] | None:
        """The day holding the settled hour at ``start`` as arrays: (the hour's index in its day, the day's
        ``values[hour, leaf, atom]``, ``present[hour, leaf]``), the same vectors as :meth:`hour`; ``None`` while the
        hour is revised (or where the numpy split cannot be exact)."""
        if self._revising(start + HOUR, now):
            return None
        day_start = start - start % DAY
        key = (family.name, day_start)
        with self._lock:
            known = key in self._hour_arrays
            hit = self._hour_arrays.get(key)
            if known:
                self._hour_arrays.move_to_end(key)
        if not known:
            hit = self._split_day(family, day_start)
            with self._lock:
                self._hour_arrays[key] = hit
                if len(self._hour_arrays) > _HOUR_DAYS:
                    self._hour_arrays.popitem(last=False)
        return None if hit is None else ((start - day_start) // HOUR, *hit)

    def _split_day(self, family: Family, day_start: int) -> Block | None:
        """Every leaf's 24 final hours of a day: :meth:`_hours_final`'s split, with numpy."""
        day = day_start // DAY
        values, present = self._day_rows(family, day)
        if family.gauge:  # a level: the same in every hour
            return np.broadcast_to(values, (24, *values.shape)), np.broadcast_to(present, (24, *present.shape))
        cums, first, uids = self._diurnal_rows(family)
        block = day // _BLOCK_DAYS
        rows = self._diurnal_days.get((family.name, block))
        if rows is None:  # each leaf's diurnal table on every day of the block: mix(uid, day) % _VARIANTS
            days = np.arange(block * _BLOCK_DAYS, (block + 1) * _BLOCK_DAYS, dtype=np.uint64)[:, None]
            rows = first + (np_mix(uids, days) % np.uint64(_VARIANTS)).astype(np.int64)
            with self._lock:
                self._diurnal_days[(family.name, block)] = rows
        return split(values, present, cums[rows[day % _BLOCK_DAYS]], family.driver)

    def _diurnal_rows(self, family: Family) -> tuple[Ints, Ints, npt.NDArray[np.uint64]]:
        """The diurnal tables as rows ``pair * _VARIANTS + v`` (``pair`` numbers the (offset, flat) pairs), and per
        leaf of ``family`` its first row and its hash: what :meth:`_hours_final` looks up leaf by leaf."""
        hit = self._hour_rows.get(family.name)
        if hit is None:
            keys = sorted(self._hour_tables)  # (offset, flat, v): each pair's variants in a run, v = 0 first
            cums = np.array([self._hour_tables[k] for k in keys], dtype=np.int64)
            first_row = {(offset, flat): i for i, (offset, flat, v) in enumerate(keys) if v == 0}
            leaves = self._leaves[family.name]
            first = [first_row[(self.org.projects[x.rule.project].utc_offset, x.flat)] for x in leaves]
            hit = (cums, np.array(first, dtype=np.int64), np.array([x.rule.uid for x in leaves], dtype=np.uint64))
            self._hour_rows[family.name] = hit
        return hit

    def _minutes_of(self, family: Family, hour_start: int, vectors: LeafVectors) -> list[LeafVectors]:
        tables = self._minute_tables
        return self._split_all(family, vectors, lambda leaf: tables[mix(leaf.rule.uid, hour_start) % _VARIANTS], 60)

    # --- revisions -----------------------------------------------------------------------------------------

    def _revising(self, end: int, now: int) -> bool:
        return self.config.revisions and end > now - self.config.revision_window

    def revised(self, end: int, now: int) -> bool:
        """Whether activity up to ``end`` is still being revised at ``now`` (its hours and days are not final)."""
        return self._revising(end, now)

    def _revise(self, family: Family, vectors: LeafVectors, end: int, now: int) -> LeafVectors:
        if family.gauge:
            return vectors
        age = now - end
        fraction = max(0.3, min(1.0, 0.55 + 0.45 * age / self.config.revision_window))
        num = int(fraction * 1_000_000)
        out: LeafVectors = {}
        driver = family.driver
        for i, vec in vectors.items():
            r = vec[driver]
            if r == 0:
                continue
            r2 = r * num // 1_000_000
            if r2 > 0:
                out[i] = tuple(c * r2 // r for c in vec)
        return out

    # --- the ActivitySource interface -----------------------------------------------------------------------

    def day(self, family: Family, start: int, now: int) -> LeafVectors:
        if family.gauge or not self._revising(start + DAY, now):
            return self._day_final(family, start)
        acc: dict[int, list[int]] = {}
        for h in range(24):
            add_into(acc, self.hour(family, start + h * HOUR, now))
        return {i: tuple(v) for i, v in acc.items()}

    def hour(self, family: Family, start: int, now: int) -> LeafVectors:
        day_start = start - start % DAY
        final = self._hours_final(family, day_start)[(start - day_start) // HOUR]
        if self._revising(start + HOUR, now):
            return self._revise(family, final, start + HOUR, now)
        return final

    def minute(self, family: Family, start: int, now: int) -> LeafVectors:
        hour_start = start - start % HOUR
        index = (start - hour_start) // MINUTE
        if self._revising(hour_start + HOUR, now):
            return self._minutes_of(family, hour_start, self.hour(family, hour_start, now))[index]
        key = (family.name, hour_start)
        with self._lock:
            hit = self._minutes.get(key)
            if hit is not None:
                self._minutes.move_to_end(key)
                return hit[index]
        minutes = self._minutes_of(family, hour_start, self.hour(family, hour_start, now))
        with self._lock:
            self._minutes[key] = minutes
            if len(self._minutes) > 512:
                self._minutes.popitem(last=False)
        return minutes[index]


assert set(FAMILIES) == {e.name for e in catalogue.USAGE_ENDPOINTS}
