"""Reading a spec file's YAML safely: bounded, strict, and every problem a
:class:`~gendev_release.errors.SpecError`.

YAML is read with PyYAML's C loader when libyaml is present, within bounds (file size, nesting,
nodes expanded through aliases). Keys must be plain text, each given once; merge keys, control
characters and scalars that cannot be read as their type are refused with their line and column.
:func:`load_document` is the entry point (:func:`gendev_release.spec.load_spec` validates what it
returns). Nothing here imports Airflow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from gendev_release.errors import SpecError, SpecProblem
from gendev_release.spec_rules import clip

#: A spec file larger than this is refused before it is parsed (the demo spec is about 4 KiB).
MAX_SPEC_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists (a spec needs 5).
MAX_DEPTH = 40
#: Most nodes a document may expand to, an alias counted each time it is used: an alias bomb
#: ("billion laughs") is refused after this many steps, long before it is expanded.
MAX_NODES = 20_000
#: Longest integer literal (Python itself refuses to convert more than 4,300 digits).
MAX_INT_CHARS = 64

#: A PyYAML loader class: the pure-Python one or libyaml's.
LoaderClass: TypeAlias = "type[yaml.SafeLoader] | type[yaml.CSafeLoader]"

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
#: Control characters a value may not hold; tab, newline and carriage return are text.
_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
#: What YAML counts as a line break (for positions computed from a reader error's offset).
_LINE_BREAK_RE = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")


class DocumentProblem(yaml.MarkedYAMLError):
    """A YAML document a spec may not be, though PyYAML would read it: too deep, too big, a bad key."""


def _problem_at(node: yaml.Node, message: str) -> DocumentProblem:
    return DocumentProblem(problem=message, problem_mark=node.start_mark)


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels; a spec needs far fewer"


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's pure-Python composer recurses once per level: stop at :data:`MAX_DEPTH` instead.

    (libyaml's composer, used by the C loader, stops at 1,000 levels by itself.)
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                # A mixin: the loader's Parser provides peek_event (the stubs type Composer alone).
                raise DocumentProblem(problem=_too_deep(),
                                      problem_mark=self.peek_event().start_mark)  # type: ignore[attr-defined]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class StrictSafeLoader(_BoundedComposer, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, nesting bounded: the fallback when libyaml is absent."""


#: The loader :func:`load_document` uses: libyaml's parser (C) when PyYAML was built with it.
LOADER: LoaderClass = StrictSafeLoader
if getattr(yaml, "__with_libyaml__", False):
    class StrictCSafeLoader(yaml.CSafeLoader):
        """libyaml's parser with PyYAML's safe constructor."""

    LOADER = StrictCSafeLoader


def _mapping_items(node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """Keys must be plain text, each once; merge keys are refused (a merged value silently loses)."""
    seen: set[str] = set()
    items: list[tuple[yaml.ScalarNode, yaml.Node]] = []
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            raise _problem_at(key, "merge keys (<<) are not supported: a merged value is silently overridden; "
                                   "write the keys out")
        if not isinstance(key, yaml.ScalarNode):
            raise _problem_at(key, "complex mapping key (a list or mapping used as a key); keys must be text")
        if key.tag != _STR_TAG:
            kind = key.tag.rsplit(":", 1)[-1]
            raise _problem_at(key, f"mapping key {clip(key.value)} is read as {kind}, not text; quote it")
        if key.value in seen:
            raise _problem_at(key, f"duplicate key {clip(key.value)} (the later value would silently win)")
        seen.add(key.value)
        items.append((key, value))
    return items


def _scalar(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> Any:
    """The value of a scalar node; odd input (``!!int x``, ``2024-13-45``) is a problem at its position."""
    control = _VALUE_CONTROL_RE.search(node.value)
    if control:
        raise _problem_at(node, f"control character U+{ord(control.group()):04X} in a value; remove it")
    if node.tag == _STR_TAG:
        return node.value
    if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
        raise _problem_at(node, f"a number of {len(node.value)} characters; at most {MAX_INT_CHARS}")
    try:  # PyYAML's scalar constructors raise ValueError/KeyError/... on odd input
        return loader.construct_object(node)
    except yaml.YAMLError:
        raise
    except Exception as exc:
        kind = node.tag.rsplit(":", 1)[-1]
        raise _problem_at(node, f"cannot read {clip(node.value)} as {kind}: {exc}; quote it if it is text") from exc


class _DocumentBuilder:
    """Builds the document's values in one bounded walk over the composed nodes (aliases expanded).

    Every alias use is built afresh (never a shared object), counted towards :data:`MAX_NODES`;
    a node inside itself is a recursive alias.

    :raises DocumentProblem: at the first recursive alias, node past :data:`MAX_NODES`, nesting
        past :data:`MAX_DEPTH`, key that is not text or is given twice, control character, or
        scalar that cannot be read as its type.
    """

    def __init__(self, loader: yaml.constructor.SafeConstructor) -> None:
        self.loader = loader
        self.count = 0
        self.on_path: set[int] = set()

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _problem_at(node, f"the document expands to more than {MAX_NODES:,} values (aliases used "
                                    "over and over?); write a smaller spec")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(self.loader, node)
        if id(node) in self.on_path:
            raise _problem_at(node, "recursive alias: a value contains itself; write it out")
        if depth >= MAX_DEPTH:
            raise _problem_at(node, _too_deep())
        self.on_path.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                value: Any = {key.value: self.build(child, depth + 1) for key, child in _mapping_items(node)}
            else:
                value = [self.build(item, depth + 1) for item in node.value]
        finally:
            self.on_path.discard(id(node))
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            # Another tag (!!set, !!omap, !!python/...): its children passed the bounds above; PyYAML's
            # safe constructor builds it or refuses the tag.
            return self.loader.construct_object(node, deep=True)
        return value


def load_yaml(text: str, loader: LoaderClass | None = None) -> Any:
    """Parse one YAML document within the spec's bounds; raise ``yaml.YAMLError`` otherwise."""
    reader = (loader or LOADER)(text)
    try:
        root = reader.get_single_node()
        if root is None:
            return None
        return _DocumentBuilder(reader).build(root)
    finally:
        reader.dispose()


def _position(text: str, offset: int, in_bytes: bool) -> str:
    """``line L, column C`` of a reader error's offset (libyaml counts UTF-8 bytes, PyYAML characters)."""
    before = text.encode("utf-8")[:offset].decode("utf-8", errors="ignore") if in_bytes else text[:offset]
    lines = _LINE_BREAK_RE.split(before)
    return f"line {len(lines)}, column {len(lines[-1]) + 1}"


def _yaml_problem(exc: yaml.YAMLError, text: str, loader: LoaderClass) -> SpecProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        where = _position(text, exc.position, in_bytes=not issubclass(loader, yaml.reader.Reader))
        return SpecProblem(where, f"invalid YAML: character U+{code:04X} is not allowed (a control character); "
                                  "remove it")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return SpecProblem(where, problem if isinstance(exc, DocumentProblem) else f"invalid YAML: {problem}")


def _read_spec_text(path: Path, source: str) -> str:
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO or device would block
            raise SpecError(source, [SpecProblem("(file)", "cannot read: not a regular file")])
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(source, [SpecProblem("(file)", "file not found")]) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the file name
        raise SpecError(source, [SpecProblem("(file)", f"cannot read: {exc}")]) from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(source, [SpecProblem("(file)", f"larger than {MAX_SPEC_BYTES:,} bytes (1 MiB); a spec is a "
                                                      "few KiB: remove generated or pasted content")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, [SpecProblem("(file)", f"cannot read: {exc}")]) from exc


def load_document(path: Path, source: str, loader: LoaderClass | None = None) -> Any:
    """Read and parse a spec file (not yet validated); every problem is a :class:`SpecError`.

    :param path: the YAML file (at most :data:`MAX_SPEC_BYTES`).
    :param source: the file as named in messages.
    :param loader: the YAML loader (default :data:`LOADER`, libyaml's when present).
    :return: the document's data (``None`` for an empty document).
    """
    text = _read_spec_text(path, source)
    loader = loader or LOADER
    try:
        return load_yaml(text, loader)
    except yaml.YAMLError as exc:
        raise SpecError(source, [_yaml_problem(exc, text, loader)]) from exc
    except RecursionError as exc:  # a safety net: the bounds above should stop every deep document first
        raise SpecError(source, [SpecProblem("(yaml)", _too_deep())]) from exc
