"""The HTTP edge: aiohttp on uvloop in front of the engine and the token cache."""
