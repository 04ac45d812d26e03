"""An ASGI WebSocket app for hypercorn (run as a subprocess by ``test_h2.py``): ``/``
echoes every message (accepting the first subprotocol offered); ``/bye`` sends one
message and closes first, with code 4000."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"websocket only\n"})
        return
    msg = await receive()
    assert msg["type"] == "websocket.connect"
    accept = {"type": "websocket.accept"}
    if scope.get("subprotocols"):
        accept["subprotocol"] = scope["subprotocols"][0]
    await send(accept)
    if scope["path"] == "/bye":
        await send({"type": "websocket.send", "text": f"http/{scope['http_version']} bye"})
        await send({"type": "websocket.close", "code": 4000})
        return
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
