"""A request body cap for upload paths, enforced while the body arrives: FastAPI reads a
multipart body whole (to disk) before any route code runs, so a route alone could only
refuse a too large file after storing it."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SLACK = 64 * 1024  # the multipart envelope and the other form fields


class TooLargeError(Exception):
    pass


class UploadLimit:
    def __init__(self, app: ASGIApp, paths: set[str], most: int) -> None:
        self.app = app
        self.paths = paths
        self.most = most

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.most + SLACK:
            await self._refuse(send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._counting(receive), sending)
        except TooLargeError:
            if not started:
                await self._refuse(send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.most + SLACK:
                raise TooLargeError
            return message

        return counted

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"files are at most {self.most} bytes here"}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
