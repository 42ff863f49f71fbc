"""The thin layer API (issue 6): modules that hold parameters and call fastlayers.functional."""

__all__: list[str] = []
