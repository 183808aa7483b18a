"""Expected versions, as the version checks take them: one grammar, parsed once.

A version expectation is one of

- a version or a prefix, component by component: ``"2.1"`` accepts ``2.1.0+cu121`` and
  ``2.1.2``, not ``2.10.0`` (as ``cuda=`` and ``torch=`` of the CUDA check);
- an exact version, when it has a local label or a pre-, post- or dev-release part:
  ``"2.1.0+cu121"`` accepts only that;
- a range of PEP 440 specifiers: ``">=2.1,<2.2"``, ``"~=3.11.4"``, ``"!=2.2.0"``.

An OS expectation is the os-release ``ID``, a version expectation, or both:
``"debian"``, ``"12"``, ``"debian 12"``, ``"ubuntu >=22.04,<24.04"``.

A version known only in part (a Python known as ``3.11`` from its folder name) is judged
only where the part decides: ``3.11`` meets ``"3.11"`` and ``">=3.10"``, and
``"3.11.4"`` is not measured, never passed or failed.

>>> VersionBound.parse("2.1", "torch").check("2.1.0+cu121")
True
>>> VersionBound.parse(">=2.1,<2.2", "torch").check("2.2.0")
False
>>> VersionBound.parse("3.11.4", "python").check("3.11", complete=False) is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import ImageCheckError

__all__ = ["OsBound", "VersionBound", "release_of"]

_EXAMPLES = {
    "torch": '"2.1", an exact version like "2.1.0+cu121", or a range like ">=2.1,<2.2"',
    "python": '"3.11", an exact version like "3.11.4", or a range like ">=3.10,<3.13"',
    "os": '"12", an exact version like "22.04", or a range like ">=22.04,<24.04"',
}
_OPERATOR = re.compile(r"^\s*(?:===|~=|==|!=|<=|>=|<|>)")
#: An os-release ID (os-release(5): lowercase letters, digits, "_", "-" and ".").
_OS_ID = re.compile(r"^[a-z][a-z0-9._-]*$")


def release_of(version: str) -> tuple[int, ...] | None:
    """The numeric components of ``version``, or None when it is not a PEP 440 version.

    >>> release_of("2.1.0+cu121"), release_of("12"), release_of("rolling")
    ((2, 1, 0), (12,), None)
    """
    try:
        return Version(version).release
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class VersionBound:
    """One version expectation (see the module's documentation), as written in ``text``."""

    text: str
    #: The range, for a bound written with operators; else None.
    specifier: SpecifierSet | None = None
    #: The version or prefix, for a bound written as a version; else None.
    version: Version | None = None

    @classmethod
    def parse(cls, text: object, what: str) -> VersionBound:
        """Parse ``text``, an expectation of ``what`` (``torch``, ``python``, ``os``).

        Raises :class:`ImageCheckError`, one line naming the value and the forms it takes.
        """
        example = _EXAMPLES.get(what, _EXAMPLES["torch"])
        if not isinstance(text, str) or not text.strip():
            raise ImageCheckError(
                f"bad {what} version bound {text!r}: write a version or prefix like {example}"
            )
        written = text.strip()
        try:
            if _OPERATOR.match(written):
                return cls(written, specifier=SpecifierSet(written))
            return cls(written, version=Version(written))
        except (InvalidSpecifier, InvalidVersion):
            raise ImageCheckError(
                f'bad {what} version bound "{written}": write a version or prefix like {example}'
            ) from None

    @property
    def precision(self) -> int:
        """How many release components the bound names (``">=3.11.4"``: 3)."""
        if self.version is not None:
            return len(self.version.release)
        found = [release_of(spec.version) for spec in self.specifier or ()]
        return max((len(r) for r in found if r is not None), default=0)

    @property
    def exact(self) -> bool:
        """Whether a version bound accepts one version only (a local label, a pre-release)."""
        version = self.version
        return version is not None and any(
            part is not None for part in (version.pre, version.post, version.dev, version.local)
        )

    def check(self, actual: str, *, complete: bool = True) -> bool | None:
        """Whether ``actual`` meets the bound; None when that is not known: ``actual`` is not
        a PEP 440 version, or (``complete=False``, a version known only in part) has fewer
        components than the bound decides on."""
        try:
            have = Version(actual)
        except InvalidVersion:
            return None
        if not complete and (len(have.release) < self.precision or self.exact):
            return None
        if self.specifier is not None:
            return self.specifier.contains(have, prereleases=True)
        want = self.version
        assert want is not None
        if self.exact:
            return want == have
        padded = have.release + (0,) * (len(want.release) - len(have.release))
        return padded[: len(want.release)] == want.release

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class OsBound:
    """An expected OS: its os-release ``ID`` (None: any), its version bound (None: any)."""

    text: str
    id: str | None = None
    version: VersionBound | None = None

    @classmethod
    def parse(cls, text: object) -> OsBound:
        """Parse ``"debian 12"``, ``"ubuntu >=22.04"``, ``"alpine"`` or ``"12"``.

        Raises :class:`ImageCheckError`, one line naming the value and the forms it takes.
        """
        forms = (
            'write the os-release ID, a version bound, or both, like "debian 12", '
            '"ubuntu >=22.04,<24.04" or "alpine"'
        )
        if not isinstance(text, str) or not text.strip():
            raise ImageCheckError(f"bad os expectation {text!r}: {forms}")
        written = text.strip()
        first, _, rest = written.partition(" ")
        if _OS_ID.match(first):
            os_id: str | None = first
            bound_text = rest.strip()
        elif first[:1].isalpha():
            raise ImageCheckError(
                f'bad os expectation "{written}": "{first}" is not an os-release ID (lowercase '
                f"letters, digits, ., _ and -); {forms}"
            )
        else:
            os_id, bound_text = None, written
        try:
            bound = VersionBound.parse(bound_text, "os") if bound_text else None
        except ImageCheckError:
            raise ImageCheckError(
                f'bad os expectation "{written}": "{bound_text}" is not a version bound; {forms}'
            ) from None
        return cls(written, os_id, bound)

    def __str__(self) -> str:
        return self.text
