"""What a handler reads from a request: headers, query numbers, bodies under a limit, an uploaded file.

Bodies are read straight from ASGI messages and headers found by a scan of
the raw list: on the prediction path, Starlette's conveniences cost more than
the parse they feed.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from steps.serve import protocol
from steps.serve.dataplane import DataPlane
from steps.serve.errors import BadRequest, PayloadTooLarge

REQUEST_ID = "rtdeploy.request_id"  # the scope key of the request's id (the app's RequestContext sets it)


def plane_of(request: Request) -> DataPlane:
    """The server's one data plane, which every protocol's handlers call."""
    return request.app.plane


def header(scope, name: bytes) -> str | None:
    """One request header (name in lower case), without building Starlette's Headers: the hot path's way."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def positive_int_query(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    # isdigit() alone takes "²" and "٣", which int() refuses or reads; 9 digits keep int() from big-number work.
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or int(value) < 1:
        raise BadRequest(f"query parameter {name}={value[:40]!r} must be a positive integer")
    return int(value)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed limit (declared or as it streams in)."""
    declared = header(request.scope, b"content-length")
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(f"body of {declared[:40]} bytes is over the {limit}-byte limit; send smaller batches")
    chunks, size = [], 0
    while True:  # ASGI messages read directly: Starlette's stream() generator costs more than the parse
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit; send smaller batches")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_image(request: Request, limit: int) -> bytes:
    """/predict's image: the raw body, or a multipart form's field "file" (the body read under the limit first)."""
    body = await read_body(request, limit)
    if protocol.media_type(header(request.scope, b"content-type")) != "multipart/form-data":
        return body

    async def the_body():
        yield body

    usage = 'send the image in a multipart field named "file" (curl -F file=@digit.png)'
    try:
        form = await MultiPartParser(request.headers, the_body(), max_files=1, max_fields=16).parse()
    except MultiPartException as error:
        raise BadRequest(f"the multipart body cannot be read ({error.message}); {usage}")
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest(f"the multipart body has no file field named 'file'; {usage}")
        return await upload.read()
    finally:
        await form.close()
