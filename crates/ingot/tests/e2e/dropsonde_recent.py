"""Reads an app's recent logs from the traffic controller endpoint and
decodes every envelope with the PyPI `dropsonde` package (CF's v1 envelope
definitions), so the encoding is checked by code Ingot did not write.

Usage: dropsonde_recent.py API_URL TOKEN APP_GUID MARKER
Prints the decoded log lines; exits non-zero unless one contains MARKER.
"""
import os
import sys
import urllib.request

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
from dropsonde.pb import envelope_pb2  # noqa: E402

api, token, guid, marker = sys.argv[1:5]
request = urllib.request.Request(f"{api}/doppler/apps/{guid}/recentlogs",
                                 headers={"Authorization": f"bearer {token}"})
with urllib.request.urlopen(request, timeout=30) as response:
    content_type = response.headers["Content-Type"]
    body = response.read()
assert content_type.startswith("multipart/x-protobuf"), content_type
boundary = content_type.split("boundary=", 1)[1].strip('"').encode()

found = False
for part in body.split(b"--" + boundary)[1:]:
    if part.startswith(b"--"):
        break  # the closing delimiter
    # "\r\n" ends the delimiter line, an empty header block ends with
    # "\r\n", and "\r\n" precedes the next delimiter: strip exactly those.
    assert part.startswith(b"\r\n\r\n") and part.endswith(b"\r\n"), part[:8]
    part = part[4:-2]
    envelope = envelope_pb2.Envelope()
    envelope.ParseFromString(part)
    assert envelope.IsInitialized(), envelope
    if envelope.eventType == envelope_pb2.Envelope.LogMessage:
        line = envelope.logMessage.message.decode(errors="replace")
        print(envelope.logMessage.source_type, envelope.logMessage.app_id, line)
        found = found or (marker in line and envelope.logMessage.app_id == guid)
if not found:
    sys.exit(f"no decoded log line contains {marker!r}")
