"""Device profiles: schema, loading and the shipped set."""

from footctl.device.profile.loader import (
    find_profiles,
    load_profile,
    load_profile_text,
    shipped_dir,
)
from footctl.device.profile.schema import Profile

__all__ = ["Profile", "find_profiles", "load_profile", "load_profile_text", "shipped_dir"]
