"""The thin asyncio shell: sessions, fan-out, timers, HTTP."""
