"""Command palette: every action of the visible pane and the app, by its description."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from hyperconsole.screens.help import binding_rows


class ActionsProvider(Provider):
    def _actions(self):
        # The palette is its own screen; the pane underneath is the one whose keys we list.
        stack = self.app.screen_stack
        under = stack[-2] if len(stack) > 1 else stack[-1]
        for row in binding_rows(under):
            yield f"{row.description} ({row.key})", partial(self._run, under, row.action)

    async def _run(self, screen, action: str) -> None:
        await screen.run_action(action)

    async def discover(self) -> Hits:
        for text, callback in self._actions():
            yield DiscoveryHit(text, callback)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback in self._actions():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback)
