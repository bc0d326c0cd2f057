"""Reads a traffic controller websocket endpoint (/doppler/apps/:guid/stream
or /doppler/firehose/:subscription_id) and decodes every binary frame with the
PyPI `dropsonde` package (CF's v1 envelope definitions), so the encoding is
checked by code Ingot did not write.

Usage: dropsonde_stream.py WS_URL TOKEN MARKER
Exits 0 once a decoded log line contains MARKER; prints how many envelopes it
decoded (every one must decode, or it fails).
"""
import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
import websocket  # noqa: E402  (PyPI websocket-client)
from dropsonde.pb import envelope_pb2  # noqa: E402

url, token, marker = sys.argv[1:4]
ws = websocket.create_connection(url, header=[f"Authorization: bearer {token}"], timeout=60)
decoded = 0
while True:
    opcode, data = ws.recv_data()
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        sys.exit(f"the stream closed after {decoded} envelopes without {marker!r}")
    if opcode != websocket.ABNF.OPCODE_BINARY:
        continue
    envelope = envelope_pb2.Envelope()
    envelope.ParseFromString(data)
    assert envelope.IsInitialized(), envelope
    decoded += 1
    if envelope.eventType == envelope_pb2.Envelope.LogMessage:
        line = envelope.logMessage.message.decode(errors="replace")
        if marker in line:
            print(f"decoded {decoded} envelopes; found {marker!r} from {envelope.logMessage.source_type}")
            ws.close()
            sys.exit(0)
