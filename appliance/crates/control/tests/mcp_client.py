"""MCP client run by the zigral-control tests: the official Python `mcp` SDK (PyPI) connects to
the control plane's /mcp with an API token and the X-Zigral-Session header, lists the tools,
takes a screenshot, clicks and tries type_secret with an unknown credential; then calls a tool without the session header. Prints one JSON
object with what it saw.

usage: mcp_client.py URL TOKEN SESSION X Y
"""

import asyncio
import base64
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def g(obj, *names):
    """Attribute by its SDK 2.x (snake_case) or 1.x (camelCase) name."""
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AttributeError(names)


async def main() -> None:
    url, token, session = sys.argv[1], sys.argv[2], sys.argv[3]
    x, y = int(sys.argv[4]), int(sys.argv[5])
    out: dict = {}
    headers = {"Authorization": f"Bearer {token}", "X-Zigral-Session": session}
    http = httpx2.AsyncClient(headers=headers, timeout=60.0)
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            shot = await client.call_tool("screenshot", {"format": "jpeg", "scale": "xga"})
            out["screenshot_is_error"] = bool(g(shot, "is_error", "isError"))
            images = [c for c in shot.content if c.type == "image"]
            out["screenshot_images"] = len(images)
            if images:
                out["screenshot_mime"] = g(images[0], "mime_type", "mimeType")
                out["screenshot_bytes"] = len(base64.b64decode(images[0].data))
            click = await client.call_tool("left_click", {"x": x, "y": y})
            out["click_is_error"] = bool(g(click, "is_error", "isError"))
            out["click_text"] = [c.text for c in click.content if c.type == "text"]
            secret = await client.call_tool("type_secret", {"name": "nope", "field": "password"})
            out["type_secret_is_error"] = bool(g(secret, "is_error", "isError"))
            out["type_secret_text"] = [c.text for c in secret.content if c.type == "text"]
    # Without the session header: initialize and list work, tool calls are refused.
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            tools = await client.list_tools()
            out["tools_without_session"] = len(tools.tools)
            r = await client.call_tool("left_click", {"x": x, "y": y})
            out["no_session_is_error"] = bool(g(r, "is_error", "isError"))
            out["no_session_text"] = [c.text for c in r.content if c.type == "text"]
    print(json.dumps(out))


asyncio.run(main())
