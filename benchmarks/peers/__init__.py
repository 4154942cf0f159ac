"""Peers measured side by side with ours (optional extra: ``pip install -e .[bench]``)."""
