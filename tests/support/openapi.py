"""The OpenAPI document as a contract: a validator for each response and schema it
declares, for tests that check real answers against it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.sse_client import EventStream

BASE = "urn:sse-hub:openapi"


def pointer_part(text: str) -> str:
    """Escape one JSON Pointer token (RFC 6901)."""
    return text.replace("~", "~0").replace("/", "~1")


class Contract:
    """The OpenAPI document and a validator for each response it declares."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(BASE, resource)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{BASE}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def check_response(
        self, path: str, method: str, status: int, body: object, media: str = "application/json"
    ) -> None:
        """Validate ``body`` against the schema declared for this response; fail if none is."""
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path} declares no {status} response"
        pointer = f"/paths/{pointer_part(path)}/{method}/responses/{status}"
        response = responses[str(status)]
        if "$ref" in response:
            pointer = response["$ref"].removeprefix("#")
            response = self.resolve(pointer)
        assert media in response["content"], f"{method.upper()} {path} {status} declares no {media}"
        self.validator(f"{pointer}/content/{pointer_part(media)}/schema").validate(body)

    def check_schema(self, name: str, body: object) -> None:
        self.validator(f"/components/schemas/{name}").validate(body)

    def resolve(self, pointer: str) -> Any:
        node: Any = self.document
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


async def contract_of(client: TestClient[Any, Any]) -> Contract:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    return Contract(await response.json())


def connected_client_id(stream: EventStream) -> str:
    connected = stream.parser.events[0].json()
    assert isinstance(connected, dict)
    return str(connected["client_id"])
