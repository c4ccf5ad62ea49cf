"""MCP client run by the zigral-actions / zigral-control tests: the official Python `mcp` SDK
(PyPI) connects to the appliance's streamable-HTTP endpoint, lists the tools, takes a
screenshot and clicks. Prints one JSON object with what it saw.

usage: mcp_client.py URL X Y [BEARER_TOKEN]
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
    url, x, y = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30.0)
    out: dict = {}
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            schema = next(g(t, "input_schema", "inputSchema") for t in tools.tools if t.name == "left_click")
            out["left_click_schema"] = schema
            shot = await client.call_tool("screenshot", {"format": "png", "scale": "xga"})
            out["screenshot_is_error"] = bool(g(shot, "is_error", "isError"))
            images = [c for c in shot.content if c.type == "image"]
            out["screenshot_images"] = len(images)
            if images:
                png = base64.b64decode(images[0].data)
                out["screenshot_mime"] = g(images[0], "mime_type", "mimeType")
                out["screenshot_size"] = [
                    int.from_bytes(png[16:20], "big"),
                    int.from_bytes(png[20:24], "big"),
                ]
            click = await client.call_tool("left_click", {"x": x, "y": y})
            out["click_is_error"] = bool(g(click, "is_error", "isError"))
            out["click_text"] = [c.text for c in click.content if c.type == "text"]
            bad = await client.call_tool("left_click", {"x": 100000, "y": 5})
            out["bad_is_error"] = bool(g(bad, "is_error", "isError"))
            out["bad_text"] = [c.text for c in bad.content if c.type == "text"]
    print(json.dumps(out))


asyncio.run(main())
