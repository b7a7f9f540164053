"""Which profile describes an advertising device, or why none does."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from footctl.device.profile.schema import Profile, normalize_uuid


@dataclass(frozen=True)
class Match:
    """The result of matching one advertisement against the known profiles."""

    profile: Profile | None
    reason: str


def _score(profile: Profile, name: str | None, uuids: set[str], manufacturers: set[int]) -> int:
    adv = profile.advertisement
    score = 0
    if adv.manufacturer_id is not None and manufacturers:
        if adv.manufacturer_id not in manufacturers:
            return 0
        score += 1
    if uuids & set(adv.service_uuids):
        score += 2
    if name and any(fnmatchcase(name, glob) for glob in adv.name_globs):
        score += 2
    return score if score >= 2 else 0


def match_profile(
    profiles: dict[str, Profile],
    name: str | None,
    service_uuids: list[str],
    manufacturer_ids: list[int],
) -> Match:
    """The best-matching profile: a name glob or an advertised service UUID must match,
    and a profile that names a manufacturer id rejects other manufacturers."""
    uuids = set()
    for u in service_uuids:
        try:
            uuids.add(normalize_uuid(u))
        except ValueError:
            continue
    manufacturers = set(manufacturer_ids)
    scored = sorted(
        ((_score(p, name, uuids, manufacturers), pid) for pid, p in profiles.items()),
        reverse=True,
    )
    if scored and scored[0][0] > 0:
        best = profiles[scored[0][1]]
        return Match(best, f"matched profile {best.id}")
    shown = name or "(no name)"
    return Match(
        None,
        f"name {shown!r} matches no profile's name_globs and none of its "
        f"{len(uuids)} advertised service UUID(s) belongs to a known profile",
    )
