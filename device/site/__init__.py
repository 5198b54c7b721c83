"""A site: the doors of one household sharing one gallery over their MQTT broker."""
