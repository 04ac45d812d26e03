"""greenrt's protocol stack: TLS, HTTP/1.1, HTTP/2, gRPC, WebSocket, Redis, NATS, Kafka.

Every protocol is a sans-IO state machine plus a thin blocking-style adapter over a
greenrt stream, using only greenrt's public API.
"""
