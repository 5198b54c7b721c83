"""The door service: the frame loop, visitor tracking, events, the outbox and MQTT."""
