"""Delivery channels: each turns a `Message` into its wire format and sends it.

`build_channel(config)` picks the class registered for the config's `kind`. A channel
raises `DeliveryError` (permanent or not) and never lets a library error through.
"""

from rules.notify.channels import email, mqtt, ntfy, webhook  # noqa: F401 - they register
from rules.notify.channels.base import CHANNELS, Channel, DeliveryError, build_channel

__all__ = ["CHANNELS", "Channel", "DeliveryError", "build_channel"]
