"""MCP client run by zigral-actions' tests/mcp.rs: the official Python `mcp` SDK calls the
current-generation tools over streamable HTTP: native `zoom`, `anthropic_computer` (a single
tool input and a toolset member tool_use block) and `openai_computer` (a GA batch). Prints one
JSON object with what it saw.

usage: mcp_adapters.py URL X Y   (X, Y: a button's centre in declared 1024x640 pixels)
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


def seen(result) -> dict:
    """Error flag, texts and PNG sizes of a tool result."""
    sizes = []
    for c in result.content:
        if c.type == "image":
            png = base64.b64decode(c.data)
            sizes.append([int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")])
    return {
        "is_error": bool(g(result, "is_error", "isError")),
        "texts": [c.text for c in result.content if c.type == "text"],
        "images": sizes,
    }


async def main() -> None:
    url, x, y = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    declared = {"display_width_px": 1024, "display_height_px": 640}
    out: dict = {}
    async with httpx2.AsyncClient(timeout=30.0) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            out["zoom"] = seen(await client.call_tool("zoom", {"region": [0, 0, 640, 400]}))
            out["single"] = seen(await client.call_tool(
                "anthropic_computer",
                {"action": "left_click", "coordinate": [x, y], **declared}))
            out["member"] = seen(await client.call_tool(
                "anthropic_computer",
                {"type": "tool_use", "id": "toolu_1", "name": "zoom",
                 "input": {"region": [0, 0, 512, 320]}, "toolset_name": "computer", **declared}))
            out["openai"] = seen(await client.call_tool(
                "openai_computer",
                {"actions": [{"type": "move", "x": 1, "y": 1},
                             {"type": "click", "button": "left", "x": x, "y": y}],
                 "call_id": "call_1", "display_width": 1024, "display_height": 640}))
            out["bad"] = seen(await client.call_tool(
                "openai_computer", {"actions": [{"type": "fly"}]}))
    print(json.dumps(out))


asyncio.run(main())
